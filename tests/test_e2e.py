"""
End-to-end tests: the installed C{twistd -n logio} in a subprocess on free
ports, driven with real sockets, C{curl}, C{nc} and the exact bytes the Go
client sends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading

from twisted.trial.unittest import SkipTest, SynchronousTestCase

import logio
from tests.support.payloads import record, topic
from tests.support.processes import ROOT
from tests.support.server import Server, twistd
from tests.support.waiting import TIMEOUT, waitFor

TOPIC = b'{"app":"myapp","proc":"web","host":"foobar"}'
GO_STREAM = (
    TOPIC + b'{"time":"2016-12-06T17:14:21.448123-05:00","raw":"2016/12/06 17:14:21 INFO hi\\n"}'
    b'{"time":"2016-12-06T17:14:22.001999-05:00","raw":"second\\n"}'
)
STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} ")


class PluginTests(SynchronousTestCase):
    """
    The installed twistd knows the plugin.
    """

    def test_twistdHelpListsLogio(self) -> None:
        """
        C{twistd --help} lists the logio command (the plugin is installed and found).
        """
        out = subprocess.run(
            [twistd(), "--help"], capture_output=True, text=True, timeout=60
        ).stdout
        self.assertRegex(out, r"\n\s+logio\s+A log plexer")


class EndToEndTests(SynchronousTestCase):
    """
    A real server, real sockets.
    """

    def setUp(self) -> None:
        self.server = Server(self)

    def test_listeningLog(self) -> None:
        """
        The server logs the real addresses it listens on.
        """
        log = self.server.log()
        self.assertIn(f"Listening for publishers on tcp 127.0.0.1:{self.server.publishPort}", log)
        self.assertIn(
            f"Listening for subscribers on tcp 127.0.0.1:{self.server.subscribePort}", log
        )

    def test_goClientStream(self) -> None:
        """
        The exact concatenated JSON of the Go client comes out formatted.
        """
        stream = self.server.subscribe("app=myapp")
        self.assertEqual(stream.status, 200)
        self.assertEqual(stream.headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(stream.headers["transfer-encoding"], "chunked")
        self.server.publish(GO_STREAM).close()
        self.assertEqual(
            stream.lines(2),
            [
                b"2016-12-06T22:14:21.448 myapp[web] foobar: 2016/12/06 17:14:21 INFO hi",
                b"2016-12-06T22:14:22.001 myapp[web] foobar: second",
            ],
        )

    def test_textLines(self) -> None:
        """
        Text lines: a topic line, then records stamped by the server; the
        last line without a newline arrives when the publisher closes.
        """
        stream = self.server.subscribe("app=cron")
        publisher = self.server.publish(b"app=cron&proc=daily\nfirst\r\nsecond\nlast")
        publisher.shutdown(socket.SHUT_WR)
        lines = stream.lines(3)
        self.assertEqual(
            [line.split(b" ", 1)[1] for line in lines],
            [
                b"cron[daily] 127.0.0.1: first",
                b"cron[daily] 127.0.0.1: second",
                b"cron[daily] 127.0.0.1: last",
            ],
        )
        for line in lines:
            self.assertRegex(line, STAMP)
        publisher.close()

    def test_regexSemantics(self) -> None:
        """
        C{proc=web|worker} takes either, C{log=bar$} is unanchored, empty matches all.
        """
        either = self.server.subscribe("app=myapp&proc=web|worker")
        anchoredEnd = self.server.subscribe("log=bar%24")
        everything = self.server.subscribe("app=&proc=")
        for proc, text in [("web", "open bar"), ("worker", "bar none"), ("clock", "tick")]:
            self.server.publish(topic("myapp", proc) + record(text + "\n")).close()
        self.assertEqual(
            sorted(line.split(b"] h: ")[1] for line in either.lines(2)), [b"bar none", b"open bar"]
        )
        self.assertEqual([line.split(b"] h: ")[1] for line in anchoredEnd.lines(1)], [b"open bar"])
        self.assertEqual(
            sorted(line.split(b"] h: ")[1] for line in everything.lines(3)),
            [b"bar none", b"open bar", b"tick"],
        )

    def test_curl(self) -> None:
        """
        C{curl -N} subscribes and prints lines as they come.
        """
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed")
        process = subprocess.Popen(
            [
                curl,
                "-sN",
                f"http://127.0.0.1:{self.server.subscribePort}/?app=myapp&proc=web|worker",
            ],
            stdout=subprocess.PIPE,
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        self.server.subscribed(1)
        self.server.publish(GO_STREAM).close()
        assert process.stdout is not None
        self.assertEqual(
            [process.stdout.readline(), process.stdout.readline()],
            [
                b"2016-12-06T22:14:21.448 myapp[web] foobar: 2016/12/06 17:14:21 INFO hi\n",
                b"2016-12-06T22:14:22.001 myapp[web] foobar: second\n",
            ],
        )

    def test_nc(self) -> None:
        """
        The README's C{nc -N} example publishes text lines.
        """
        nc = shutil.which("nc")
        if nc is None:
            raise SkipTest("nc is not installed")
        stream = self.server.subscribe("app=myapp")
        subprocess.run(
            [nc, "-N", "127.0.0.1", str(self.server.publishPort)],
            input=b"app=myapp&proc=web&host=foobar\nhello\n",
            timeout=TIMEOUT,
            check=True,
        )
        [line] = stream.lines(1)
        self.assertEqual(line.split(b" ", 1)[1], b"myapp[web] foobar: hello")

    def test_badJSON(self) -> None:
        """
        Malformed JSON gets one error line back and the connection closed;
        records before it are delivered.
        """
        stream = self.server.subscribe("app=myapp")
        publisher = self.server.publish(TOPIC + record("good\n") + b'{"time": nope}')
        reply = publisher.recv(1000)
        self.assertTrue(reply.startswith(b"error: bad JSON"), reply)
        self.assertEqual(publisher.recv(1000), b"")
        self.assertEqual(stream.lines(1), [b"2016-12-06T22:14:21.448 myapp[web] foobar: good"])

    def test_missingApp(self) -> None:
        """
        A text topic line without app is refused with an error line.
        """
        publisher = self.server.publish(b"proc=web\nhello\n")
        self.assertIn(b"'app'", publisher.recv(1000))

    def test_badRegex(self) -> None:
        """
        A pattern that does not compile gets 400 naming the parameter.
        """
        stream = self.server.subscribe("log=(x")
        self.assertEqual(stream.status, 400)
        self.assertIn(b"'log'", stream.readUntil(lambda b: b"\n" in b))

    def test_disconnectRemovesSubscriber(self) -> None:
        """
        A subscriber that closes is removed from the broker as soon as the
        server writes to it (a client that only half-closed still reads, so
        the end of its input is not the end of the stream).
        """
        streams = [self.server.subscribe("app=gone") for _ in range(3)]
        self.server.subscribed(3)
        for stream in streams:
            stream.close()
        publisher = self.server.publish(b"app=gone\n")
        self.addCleanup(publisher.close)

        def removed() -> bool:
            publisher.sendall(b"anyone there?\n")
            return "(0 subscribers)" in self.server.log()

        waitFor(removed, what="the subscribers to be removed")

    def test_noLossInOrder(self) -> None:
        """
        100k lines from four publishers at full speed reach a subscriber
        (C{curl} writing to a file): none lost, each publisher's lines in
        order.  Its queue may hold them all, so a busy machine that slows
        C{curl} cannot make it drop any.
        """
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed")
        self.server.stop()
        self.server = Server(self, "--buffer", "200000", "--buffer-bytes", str(64 << 20))
        count = 25000
        names = ("a", "b", "c", "d")
        output = os.path.abspath(self.mktemp())
        process = subprocess.Popen(
            [curl, "-sN", "-o", output, f"http://127.0.0.1:{self.server.subscribePort}/?app=seq"]
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        self.server.subscribed(1)

        def publish(name: str) -> None:
            body = b"".join(record(f"{name} {i:06d} " + "x" * 60 + "\n") for i in range(count))
            self.server.publish(topic("seq", name) + body).close()

        threads = [threading.Thread(target=publish, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        def received() -> list[bytes] | None:
            # curl creates its output file when the first data arrives.
            if not os.path.exists(output):
                return None
            with open(output, "rb") as f:
                lines = f.read().splitlines()
            return lines if len(lines) >= len(names) * count else None

        lines = waitFor(received, timeout=60, what="every line")
        assert isinstance(lines, list)
        seen: dict[bytes, list[int]] = {name.encode(): [] for name in names}
        for line in lines:
            name, number = line.split(b": ", 1)[1].split(b" ")[:2]
            seen[name].append(int(number))
        self.assertEqual(seen, {name.encode(): list(range(count)) for name in names})

    def test_slowSubscriberAccounted(self) -> None:
        """
        A stalled subscriber loses lines, is told exactly how many, and
        slows nobody: the fast subscriber gets every line.  The publisher
        sends in steps the fast subscriber has read, so a busy machine
        cannot make the fast one fall behind.
        """
        self.server.stop()
        self.server = Server(self, "--buffer", "500")
        count = 100000
        step = 200
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", self.server.subscribePort))
        slow.sendall(b"GET /?app=seq HTTP/1.1\r\nHost: localhost\r\n\r\n")
        fast = self.server.subscribe("app=seq")
        self.server.subscribed(2)
        publisher = self.server.publish(topic("seq", "p"))
        for first in range(0, count, step):
            publisher.sendall(
                b"".join(record(f"{i:06d} " + "y" * 80 + "\n") for i in range(first, first + step))
            )
            fast.lines(first + step, timeout=60)
        publisher.close()
        self.assertEqual(len(fast.lines(count)), count)
        self.assertNotIn(b"dropped", fast.body)
        received = 0
        dropped = 0
        data = b""
        slow.settimeout(TIMEOUT)

        def complete() -> bool:
            nonlocal data, received, dropped
            data += slow.recv(1 << 20)
            *lines, data = data.split(b"\n")
            for line in lines:
                notice = re.search(rb"logio\[logio\] \S+: (\d+) lines dropped", line)
                if notice:
                    dropped += int(notice.group(1))
                elif b" seq[p] h: " in line:
                    received += 1
            return received + dropped == count

        waitFor(complete, timeout=60, what="all lines accounted for")
        self.assertGreater(dropped, 0)
        slow.close()

    def test_sigtermEndsStreams(self) -> None:
        """
        SIGTERM ends every response with the final chunk, then the server
        shuts down cleanly (twistd re-raises the signal, so the status says SIGTERM).
        """
        stream = self.server.subscribe()
        self.server.publish(GO_STREAM).close()
        stream.lines(2)
        self.assertEqual(self.server.stop(), -signal.SIGTERM)
        stream.readToEnd()
        self.assertTrue(stream.ended)
        self.assertIn("Server Shut Down.", self.server.log())

    def test_sigtermStopsAccepting(self) -> None:
        """
        On SIGTERM the server stops accepting connections at once, and still
        ends the streams it has: a subscriber that was not reading gets what
        was waiting for it, then the final chunk.
        """
        publishPort, subscribePort = self.server.publishPort, self.server.subscribePort
        slow = socket.socket()
        self.addCleanup(slow.close)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", subscribePort))
        slow.sendall(b"GET /?app=seq HTTP/1.1\r\nHost: localhost\r\n\r\n")
        fast = self.server.subscribe("app=seq")
        self.server.subscribed(2)
        count = 20000
        step = 1000
        publisher = self.server.publish(topic("seq", "p"))
        for first in range(0, count, step):
            publisher.sendall(
                b"".join(record(f"{i:06d} " + "y" * 80 + "\n") for i in range(first, first + step))
            )
            fast.lines(first + step)
        publisher.close()
        # Everything has been read and delivered or queued.
        self.assertEqual(len(fast.lines(count)), count)
        slow.settimeout(TIMEOUT)
        received: list[bytes] = []

        def drain() -> None:
            while chunk := slow.recv(1 << 20):
                received.append(chunk)

        self.server.process.terminate()
        # Read at once: the server gives streams a few seconds to end.
        reader = threading.Thread(target=drain)
        reader.start()
        for port in (publishPort, subscribePort):
            self.server.waitForLog(f"(TCP Port {port} Closed)")
            self.assertRaises(
                ConnectionRefusedError, socket.create_connection, ("127.0.0.1", port), TIMEOUT
            )
        reader.join(TIMEOUT)
        data = b"".join(received)
        self.assertTrue(data.endswith(b"\r\n0\r\n\r\n"), data[-100:])
        self.assertIn(b"seq[p] h: 019999 ", data)
        self.assertEqual(self.server.stop(), -signal.SIGTERM)


class WorkingTreeTests(SynchronousTestCase):
    """
    The end-to-end tests run this checkout's code, not an installed copy.
    """

    def test_serverRunsTheCheckout(self) -> None:
        """
        The server the tests start imports logio from this checkout (so an
        edit is tested without reinstalling), and says where it runs from.
        """
        server = Server(self)
        server.waitForLog(f"logio {logio.version()} from {os.path.join(ROOT, 'logio')}\n")
