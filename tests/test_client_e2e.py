"""
End-to-end tests of the client against the real server (the installed
C{twistd -n logio}, see L{tests.support.server}): C{import logio.auto} in a
subprocess, C{logio pub} and C{logio tail}, reconnection, drop notices, and
the C{ssl:} and C{unix:} publisher endpoints.
"""

from __future__ import annotations

import datetime
import logging
import re
import socket
import subprocess
import threading
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from logio import LogioHandler
from tests.support.ports import freePort, socketPath
from tests.support.processes import Running, logio, pub, runPython
from tests.support.server import Server, Stream
from tests.support.sink import TestServer
from tests.support.tls import certificates
from tests.support.tokens import tokensFile
from tests.support.waiting import waitFor

#: A subscriber line: timestamp, topic, log text.
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) (\S+\[\S*\]) (\S+): (.*)$")


def parseLine(line: bytes | str) -> tuple[datetime.datetime, str, str, str]:
    """
    Split a subscriber line into its UTC time, C{app[proc]}, host and text.
    """
    text = line.decode() if isinstance(line, bytes) else line
    match = LINE.match(text)
    assert match is not None, text
    stamp = datetime.datetime.fromisoformat(match[1]).replace(tzinfo=datetime.timezone.utc)
    return stamp, match[2], match[3], match[4]


def texts(lines: list[bytes]) -> list[str]:
    """
    The log texts of subscriber lines.
    """
    return [parseLine(line)[3] for line in lines]


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """
    Copy bytes from C{source} to C{sink} until either side goes away.
    """
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class Gate(TestServer):
    """
    A TCP forwarder to the server's publisher port: closing the gate is, to
    the client, the server going away, while the server and its subscribers
    stay up.
    """

    def __init__(self, testCase: SynchronousTestCase, upstream: int, port: int = 0) -> None:
        self.upstream = upstream
        super().__init__(testCase, port)

    def serve(self, conn: socket.socket, state: None) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream))
        if not self._keep(upstream):
            return
        threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()
        _pump(conn, upstream)


class HandlerEndToEndTests(SynchronousTestCase):
    """
    LogioHandler and logio.auto publishing to the real server.
    """

    def publishing(self, url: str, **options: Any) -> tuple[LogioHandler, logging.Logger]:
        """
        A handler for C{url} whose reports are kept in C{self.reports}, and a
        logger of its own that sends only to it.
        """
        handler = LogioHandler(url, **options)
        self.reports: list[str] = []
        handler.publisher.report = self.reports.append
        self.addCleanup(handler.close)
        logger = logging.getLogger(f"e2e.{self._testMethodName}")
        logger.propagate = False
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)
        return handler, logger

    def startHeld(self, handler: LogioHandler, *options: str) -> tuple[Server, Stream]:
        """
        Start a server and subscribe to it before the handler may send.

        Delivery is at-most-once, so what reaches the server before a
        subscriber exists is gone: the publisher's lock is held meanwhile,
        which keeps its sending thread from taking any record off the queue
        (it may connect, but sends nothing).
        """
        with handler.publisher._lock:
            server = Server(self, *options)
            stream = server.subscribe("app=^held$")
            server.subscribed(1)
        return server, stream

    def test_autoInOrderExactFormat(self) -> None:
        """
        import logio.auto records arrive in order, exactly formatted, with their own times.
        """
        server = Server(self)
        stream = server.subscribe("app=^e2e$")
        result = runPython(
            "import logging, logio.auto\n"
            "root = logging.getLogger()\n"
            "root.setLevel(logging.INFO)\n"
            "logio.auto.handler.addFilter(lambda r: print(repr(r.created)) or True)\n"
            "for i in range(300):\n"
            "    logging.info('record %d', i)\n"
            "try:\n"
            "    raise KeyError('gone')\n"
            "except KeyError:\n"
            "    logging.getLogger('app').exception('failed')\n",
            LOGIO_URL=f"logio://127.0.0.1:{server.publishPort}?app=e2e&proc=web&host=box1",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        created = [float(line) for line in result.stdout.split()]
        lines = stream.lines(304)
        self.assertEqual(len(lines), 304)
        expected = [f"INFO root: record {i}" for i in range(300)] + [
            "ERROR app: failed",
            "Traceback (most recent call last):",
            '  File "<string>", line 8, in <module>',
            "KeyError: 'gone'",
        ]
        self.assertEqual(texts(lines), expected)
        times = created + [created[-1]] * 3
        for line, stamp in zip(lines, times, strict=True):
            when, topic, host, _ = parseLine(line)
            self.assertEqual((topic, host), ("e2e[web]", "box1"))
            self.assertLess(abs(when.timestamp() - stamp), 0.0011)

    def test_serverDownAtStart(self) -> None:
        """
        Records logged while no server listens arrive, in order, once it starts.
        """
        publishPort = freePort()
        handler, logger = self.publishing(f"logio://127.0.0.1:{publishPort}?app=held&proc=p")
        for i in range(500):
            logger.warning("early %d", i)
        waitFor(lambda: self.reports, what="a report that the server is away")
        self.assertIn(f"cannot connect to 127.0.0.1:{publishPort}", self.reports[0])
        _, stream = self.startHeld(handler, "--publish", f"tcp:{publishPort}:interface=127.0.0.1")
        lines = stream.lines(500)
        self.assertEqual(texts(lines), [f"WARNING {logger.name}: early {i}" for i in range(500)])
        self.assertEqual({parseLine(line)[1] for line in lines}, {"held[p]"})

    def test_serverRestarted(self) -> None:
        """
        After a server restart the handler reconnects, resends the topic and
        loses nothing: what was logged while the server was down arrives, in order.
        """
        publishPort = freePort()
        options = ("--publish", f"tcp:{publishPort}:interface=127.0.0.1")
        handler, logger = self.publishing(f"logio://127.0.0.1:{publishPort}?app=held&proc=p")
        first, stream = self.startHeld(handler, *options)
        logger.warning("before")
        self.assertEqual(texts(stream.lines(1)), [f"WARNING {logger.name}: before"])
        first.stop()
        for i in range(100):
            logger.warning("while away %d", i)
        waitFor(
            lambda: any("cannot connect" in report for report in self.reports),
            what="a report that the server is away",
        )
        _, stream = self.startHeld(handler, *options)
        logger.warning("after")
        lines = stream.lines(101)
        self.assertEqual(
            texts(lines),
            [f"WARNING {logger.name}: while away {i}" for i in range(100)]
            + [f"WARNING {logger.name}: after"],
        )
        self.assertEqual({parseLine(line)[1] for line in lines}, {"held[p]"})

    def test_dropCountReachesSubscribers(self) -> None:
        """
        Subscribers see the exact count of records dropped while the server was away.
        """
        server = Server(self)
        gate = Gate(self, server.publishPort)
        handler, logger = self.publishing(
            f"logio://127.0.0.1:{gate.port}?app=gate&proc=p&host=h", max_records=50
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        stream = server.subscribe("app=gate")
        for i in range(10):
            logger.warning("%d", i)
        stream.lines(10)
        gate.stop()
        for i in range(10, 210):
            logger.warning("%d", i)
        Gate(self, server.publishPort, gate.port)
        lines = stream.lines(61)
        self.assertEqual(
            texts(lines),
            [str(i) for i in range(10)]
            + [
                "logio: 150 records dropped: the client's queue was full "
                "(server unreachable or too slow)"
            ]
            + [str(i) for i in range(160, 210)],
        )
        self.assertEqual({parseLine(line)[1] for line in lines}, {"gate[p]"})

    def test_tlsEndpoint(self) -> None:
        """
        logios:// with ?ca= publishes to the server's ssl: endpoint.
        """
        paths = certificates(self.mktemp(), ["localhost"])
        server = Server(
            self,
            "--publish",
            f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}",
        )
        stream = server.subscribe("app=tls")
        handler = LogioHandler(f"logios://localhost:{server.publishPort}?app=tls&ca={paths['ca']}")
        self.addCleanup(handler.close)
        handler.handle(
            logging.makeLogRecord({"name": "root", "msg": "over TLS", "levelname": "INFO"})
        )
        self.assertEqual(texts(stream.lines(1)), ["INFO root: over TLS"])

    def test_unixEndpoint(self) -> None:
        """
        logio+unix:// publishes to the server's unix: endpoint.
        """
        path = socketPath(self, "publish.sock")
        server = Server(self, "--publish", f"unix:{path}")
        stream = server.subscribe("app=local")
        handler = LogioHandler(f"logio+unix://{path}?app=local&proc=p&host=h")
        self.addCleanup(handler.close)
        handler.handle(
            logging.makeLogRecord({"name": "root", "msg": "over a socket", "levelname": "INFO"})
        )
        (line,) = stream.lines(1)
        self.assertEqual(parseLine(line)[1:], ("local[p]", "h", "INFO root: over a socket"))


class CommandEndToEndTests(SynchronousTestCase):
    """
    logio pub and logio tail with the real server.
    """

    def tailUntilLive(self, server: Server, app: str) -> Running:
        """
        Start C{logio tail} for C{app} and wait until it prints what is
        published (publishing probes until one shows).
        """
        tail = Running(
            self,
            logio("tail", f"http://127.0.0.1:{server.subscribePort}/?app=^{app}$"),
            stdout=subprocess.PIPE,
        )

        def live() -> bool:
            server.publish(b"app=%s&proc=probe\nprobe\n" % app.encode()).close()
            return b"probe" in tail.out

        waitFor(live, what="logio tail to print a probe")
        return tail

    def test_pubToTail(self) -> None:
        """
        Lines piped into logio pub come out of logio tail, in order.
        """
        server = Server(self)
        tail = self.tailUntilLive(server, "piped")
        lines = b"".join(b"line %d\n" % i for i in range(100))
        result = pub(
            f"logio://127.0.0.1:{server.publishPort}?app=piped&proc=job&host=h", stdin=lines
        )
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        tail.waitOut(b"line 99\n")
        mine = [line for line in tail.out.splitlines() if b"piped[job]" in line]
        self.assertEqual(texts(mine), [f"line {i}" for i in range(100)])
        self.assertEqual({parseLine(line)[2] for line in mine}, {"h"})
        self.assertEqual(tail.interrupt(), 130)
        self.assertEqual(tail.err, b"")

    def test_tailReconnects(self) -> None:
        """
        logio tail says when the server stops, reconnects to its successor and prints again.
        """
        subscribePort = freePort()
        options = ("--subscribe", f"tcp:{subscribePort}:interface=127.0.0.1")
        first = Server(self, *options)
        tail = self.tailUntilLive(first, "again")
        first.stop()
        tail.waitErr(b"; reconnecting\n")
        second = Server(self, *options)
        tail.waitErr(f"logio tail: connected to 127.0.0.1:{subscribePort} again".encode())
        second.publish(b"app=again&proc=p\nagain\n").close()
        tail.waitOut(b": again\n")
        (line,) = [line for line in tail.out.splitlines() if line.endswith(b": again")]
        self.assertEqual(parseLine(line)[1], "again[p]")


class PubRefusedTests(SynchronousTestCase):
    """
    C{logio pub} told by the server that it may not publish, or pointed at
    a port that is not a publisher port, says so and exits with 1.
    """

    def refusedPub(self, url: str, said: bytes) -> Running:
        """
        Run C{logio pub URL}, writing a line at a time until C{said} is on
        its stderr (the answer is read before the next line is sent), then
        end its input.
        """
        running = Running(self, logio("pub", url), stdin=subprocess.PIPE)
        stdin = running.process.stdin
        assert stdin is not None

        def answered() -> bool:
            stdin.write(b"a line\n")
            stdin.flush()
            return said in running.err

        waitFor(answered, what=f"{said!r} on stderr")
        stdin.close()
        return running

    def test_unknownToken(self) -> None:
        """
        A token the server does not know: the server's error line, status 1.
        """
        server = Server(self, "--auth", tokensFile(self, "known-token-0123456789 pub .*\n"))
        url = f"logio://nope-token-0123456789@127.0.0.1:{server.publishPort}?app=shop"
        running = self.refusedPub(url, b"error: unknown token")
        self.assertEqual(running.wait(), 1, running.err)
        self.assertEqual(running.err.count(b"error: unknown token"), 1, running.err)

    def test_refusedAtOnce(self) -> None:
        """
        C{seq 1 2000 | logio pub} with a token the server does not know,
        or to the subscriber port: every line is written before the server
        answers, and still the answer is printed, the lines are counted as
        refused, and the status is 1.
        """
        server = Server(self, "--auth", tokensFile(self, "known-token-0123456789 pub .*\n"))
        lines = b"".join(b"%d\n" % n for n in range(1, 2001))
        for url, said in [
            (
                f"logio://nope-token-0123456789@127.0.0.1:{server.publishPort}?app=shop",
                b"error: unknown token",
            ),
            (f"logio://127.0.0.1:{server.subscribePort}?app=shop", b"subscriber (HTTP) port"),
        ]:
            result = pub(url, stdin=lines)
            self.assertEqual(result.returncode, 1, result.stderr)
            self.assertIn(said, result.stderr)
            self.assertIn(b"2000 lines were refused", result.stderr)

    def test_acceptedExitsZero(self) -> None:
        """
        A server that takes the stream confirms it by closing without a
        word: status 0, nothing said, every line delivered.
        """
        server = Server(self)
        stream = server.subscribe("app=^shop$")
        server.subscribed(1)
        lines = b"".join(b"%d\n" % n for n in range(1, 2001))
        result = pub(f"logio://127.0.0.1:{server.publishPort}?app=shop", stdin=lines)
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertEqual(len(stream.lines(2000)), 2000)

    def test_subscriberPort(self) -> None:
        """
        The subscriber port, which answers in HTTP: it says which port
        publishers connect to, status 1.
        """
        server = Server(self)
        url = f"logio://127.0.0.1:{server.subscribePort}?app=shop"
        running = self.refusedPub(url, b"that is the subscriber (HTTP) port")
        self.assertEqual(running.wait(), 1, running.err)
        self.assertIn(b"publishers connect to port 7701", running.err)
