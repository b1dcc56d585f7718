"""
Tests for the C{logio} command (L{logio.client.cli}), run as a subprocess:
C{pub} against L{Sink} servers, C{tail} against L{HTTPStub}, a scripted HTTP
server, and both commands' help and errors; and C{tail}'s URL building
(L{subscriptionURL}) directly.
"""

from __future__ import annotations

import os
import pty
import queue
import signal
import socket
import ssl
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from logio.client.cli import parseArguments
from logio.client.tail import Subscription, subscriptionURL
from tests.support.http import chunk
from tests.support.ports import freePort
from tests.support.processes import Running, environment, logio, pub
from tests.support.sink import Sink, TestServer
from tests.support.tls import certificates, serverContext
from tests.support.waiting import waitFor

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
STREAM_END = b"0\r\n\r\n"


class HTTPStub(TestServer):
    """
    An HTTP server whose answers the test writes by hand: each connection,
    its request read, is handed over by L{next}.

    @ivar requests: the request line of every connection, in order.
    """

    def __init__(
        self, testCase: SynchronousTestCase, port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.requests: list[bytes] = []
        #: The whole head of every request, in order.
        self.heads: list[bytes] = []
        self._ready: queue.Queue[socket.socket] = queue.Queue()
        super().__init__(testCase, port, tls=tls)

    def serve(self, conn: socket.socket, state: None) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            data = conn.recv(4096)
            if not data:
                return
            request += data
        self.requests.append(request.split(b"\r\n")[0])
        self.heads.append(request)
        self._ready.put(conn)

    def next(self, timeout: float = 20) -> socket.socket:
        """
        The next connection whose request has been read.
        """
        return self._ready.get(timeout=timeout)


class VersionTests(SynchronousTestCase):
    """
    C{logio --version}.
    """

    def test_version(self) -> None:
        """
        It prints the installed version and exits 0.
        """
        import importlib.metadata

        result = subprocess.run(
            logio("--version"), capture_output=True, env=environment(), timeout=20
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.strip(), f"logio {importlib.metadata.version('logio')}".encode()
        )


class PubTests(SynchronousTestCase):
    """
    C{logio pub URL} publishes standard input, one record per line.
    """

    def test_publishesLines(self) -> None:
        """
        One record per line; CRLF becomes LF, a last line gets its newline; status 0.
        """
        sink = Sink(self)
        result = pub(
            f"logio://127.0.0.1:{sink.port}?app=cli&proc=batch&host=h",
            stdin=b"one\ntwo\r\nthr\xc3\xa9e",
        )
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertEqual(sink.waitForRaws(3), ["one\n", "two\n", "thr\u00e9e\n"])
        self.assertEqual(sink.values(0)[0], {"app": "cli", "proc": "batch", "host": "h"})

    def test_defaultProc(self) -> None:
        """
        Without proc in the URL, the lines' proc says they came from logio
        pub's input ("stdin"), not the program's name.
        """
        sink = Sink(self)
        result = pub(f"logio://127.0.0.1:{sink.port}?app=cli&host=h", stdin=b"x\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        sink.waitForRaws(1)
        self.assertEqual(sink.values(0)[0], {"app": "cli", "proc": "stdin", "host": "h"})

    def interruptedPub(self) -> tuple[Sink, Running]:
        """
        A C{logio pub} reading a pipe, one line sent, then Ctrl-C once.
        """
        sink = Sink(self)
        running = Running(
            self, logio("pub", f"logio://127.0.0.1:{sink.port}?app=a"), stdin=subprocess.PIPE
        )
        assert running.process.stdin is not None
        running.process.stdin.write(b"started\n")
        running.process.stdin.flush()
        sink.waitForRaws(1)
        running.process.send_signal(signal.SIGINT)
        return sink, running

    def test_ctrlCReadsToEnd(self) -> None:
        """
        Ctrl-C (which reaches the whole pipeline) does not cut the app's
        last lines off: reading goes on to the end of input, status 0.
        """
        sink, running = self.interruptedPub()
        running.waitErr(b"reading to the end of input")
        assert running.process.stdin is not None
        running.process.stdin.write(b"shutting down\nbye\n")
        running.process.stdin.close()
        self.assertEqual(running.process.wait(20), 0, running.err)
        self.assertEqual(sink.waitForRaws(3), ["started\n", "shutting down\n", "bye\n"])

    def test_secondCtrlCInterrupts(self) -> None:
        """
        A second Ctrl-C ends C{logio pub} at once with status 130.
        """
        _, running = self.interruptedPub()
        running.waitErr(b"Ctrl-C again to stop now")
        self.assertEqual(running.interrupt(), 130)

    def test_serverAway(self) -> None:
        """
        With the server away it gives up after --timeout, says how many were not sent, status 1.
        """
        port = freePort()
        result = pub("--timeout", "0.3", f"logio://127.0.0.1:{port}?app=a", stdin=b"1\n2\n3\n")
        self.assertEqual(result.returncode, 1)
        self.assertIn(
            f"logio pub: 3 lines were not sent within 0.3 s to 127.0.0.1:{port}\n".encode(),
            result.stderr,
        )

    def test_overflow(self) -> None:
        """
        Past --max-lines the oldest lines are dropped, and it says so.
        """
        result = pub(
            "--timeout",
            "0.3",
            "--max-lines",
            "2",
            f"logio://127.0.0.1:{freePort()}?app=a",
            stdin=b"1\n2\n3\n4\n5\n",
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"logio pub: 3 lines dropped: the queue was full\n", result.stderr)
        self.assertIn(b"logio pub: 2 lines were not sent", result.stderr)

    def test_burstAllArrive(self) -> None:
        """
        A burst far past the queue's bounds arrives whole and in order at a
        server that reads slower than the input comes: while the server is
        up, reading input waits for the sender instead of dropping lines.
        """
        sink = Sink(self, slow=True)
        lines = [b"%099d\n" % i for i in range(100_000)]
        url = f"logio://127.0.0.1:{sink.port}?app=a"
        result = pub("--timeout", "20", url, stdin=b"".join(lines))
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertEqual(sink.waitForRaws(len(lines)), [line.decode() for line in lines])

    def test_maxLinesKeptWhileAway(self) -> None:
        """
        While the server is away --max-lines lines of usual length are all
        kept: the byte bound grows with it.
        """
        result = pub(
            "--timeout",
            "0.3",
            "--max-lines",
            "15000",
            f"logio://127.0.0.1:{freePort()}?app=a",
            stdin=b"%099d\n" * 15000 % tuple(range(15000)),
        )
        self.assertEqual(result.returncode, 1)
        self.assertNotIn(b"dropped", result.stderr)
        self.assertIn(b"logio pub: 15000 lines were not sent", result.stderr)

    def test_maxBytes(self) -> None:
        """
        --max-bytes bounds the lines kept while the server is away, each
        counting its length plus 64; the drops are counted exactly.
        """
        result = pub(
            "--timeout",
            "0.3",
            "--max-lines",
            "15000",
            "--max-bytes",
            "1M",
            f"logio://127.0.0.1:{freePort()}?app=a",
            stdin=b"%099d\n" * 15000 % tuple(range(15000)),
        )
        kept = (1 << 20) // (100 + 64)
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"logio pub: {15000 - kept} lines dropped".encode(), result.stderr)
        self.assertIn(f"logio pub: {kept} lines were not sent".encode(), result.stderr)

    def test_longLine(self) -> None:
        """
        An over-long line is cut and marked; the next line is published as usual.
        """
        sink = Sink(self)
        result = pub(f"logio://127.0.0.1:{sink.port}?app=a", stdin=b"z" * 300_000 + b"\nnext\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        first, second = sink.waitForRaws(2)
        self.assertTrue(first.startswith("zzz"))
        self.assertTrue(first.endswith(" [truncated]\n"))
        self.assertLess(len(first), 65536)
        self.assertEqual(second, "next\n")

    def test_badURL(self) -> None:
        """
        A bad URL is one line on stderr and exit status 2.
        """
        result = pub("logio://127.0.0.1:7701")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr,
            b"logio pub: logio URL 'logio://127.0.0.1:7701' has no app: add ?app=NAME\n",
        )


class UsageTests(SynchronousTestCase):
    """
    Help and argument errors.
    """

    def test_help(self) -> None:
        """
        --help on the command and each subcommand describes it; status 0.
        """
        for args, says in [
            ([], b"pub"),
            (["pub"], b"logio pub [-h] [--timeout SECONDS]"),
            (["tail"], b"logio tail [-h] [--color {auto,always,never}]"),
        ]:
            result = subprocess.run(
                logio(*args, "--help"), capture_output=True, env=environment(), timeout=30
            )
            self.assertEqual(result.returncode, 0)
            self.assertIn(says, result.stdout)

    def test_argumentErrors(self) -> None:
        """
        A wrong command line is one line on stderr and exit status 2.
        """
        for args, says in [
            ([], b"logio: error: the following arguments are required: COMMAND"),
            (["pub"], b"logio pub: error: the following arguments are required: URL"),
            (["pub", "--timeout", "-1", "logio://h?app=a"], b"not a positive number"),
            (["pub", "--max-bytes", "1000", "logio://h?app=a"], b"not a size of at least 64K"),
            (["pub", "--max-bytes", "1X", "logio://h?app=a"], b"not a size of at least 64K"),
            (["tail", "--color", "sometimes", "http://h/"], b"invalid choice: 'sometimes'"),
            (["tail", "ftp://h/"], b"logio tail: URL 'ftp://h/' must look like http://"),
            (["tail", "--ca", "x.pem", "http://h/"], b"--ca is only for https:// URLs"),
            (["tail", "--ca", "x.pem", "h:9000"], b"--ca is only for https:// URLs"),
            (["tail", "http://h:port/"], b"logio tail: URL 'http://h:port/' has a bad port"),
            (["tail", "-n", "-1", "h"], b"argument -n/--tail: '-1' is not a whole number"),
        ]:
            result = subprocess.run(
                logio(*args), capture_output=True, env=environment(), timeout=30
            )
            self.assertEqual(result.returncode, 2, args)
            self.assertIn(says, result.stderr)
            self.assertEqual(result.stderr.count(b"\n"), 1, result.stderr)

    def test_tailHelp(self) -> None:
        """
        tail's --help describes every flag and gives the examples.
        """
        result = subprocess.run(
            logio("tail", "--help"), capture_output=True, env=environment(), timeout=30
        )
        self.assertEqual(result.returncode, 0)
        for says in [
            b"--app RE",
            b"--proc RE",
            b"--host RE",
            b"--log RE",
            b"-n N, --tail N",
            b"-f, --follow, --no-follow",
            b"--json",
            b"never on a reconnection",
            b"http://localhost:7702/",
            b"logio tail --app myapp --log '\\d+ms' -n 100\n",
        ]:
            self.assertIn(says, result.stdout)


def subscription(*args: str) -> Subscription:
    """
    The subscription of C{logio tail ARGS}.
    """
    return subscriptionURL(parseArguments(["tail", *args]))


class SubscriptionURLTests(SynchronousTestCase):
    """
    L{subscriptionURL} turns tail's URL and flags into where to connect and
    what to request.
    """

    def test_defaultPorts(self) -> None:
        """
        http:// means port 80, https:// 443, a bare host 7702, no URL localhost:7702.
        """
        for args, where in [
            ([], ("http", "localhost", 7702, "/")),
            (["h"], ("http", "h", 7702, "/")),
            (["h:9000"], ("http", "h", 9000, "/")),
            (["h:9000/x?app=a"], ("http", "h", 9000, "/x?app=a")),
            (["[::1]:9000"], ("http", "::1", 9000, "/")),
            (["http://h/"], ("http", "h", 80, "/")),
            (["http://h:9000"], ("http", "h", 9000, "/")),
            (["https://h/?app=a"], ("https", "h", 443, "/?app=a")),
            (["HTTPS://h:9443/"], ("https", "h", 9443, "/")),
        ]:
            self.assertEqual(subscription(*args)[:4], where, args)

    def test_badURLs(self) -> None:
        """
        Another scheme, no host or a bad port is a ValueError that names the URL.
        """
        for url, says in [
            ("ftp://h/", "URL 'ftp://h/' must look like http://HOST[:PORT]/?app=RE"),
            ("http:///?app=a", "URL 'http:///?app=a' must look like http://"),
            ("h:99999", "URL 'h:99999' has a bad port"),
        ]:
            with self.assertRaises(ValueError) as raised:
                subscription(url)
            self.assertIn(says, str(raised.exception))

    def test_filtersEncoded(self) -> None:
        """
        The filter flags are URL-encoded, so + stays a plus and & cannot start a parameter.
        """
        self.assertEqual(
            subscription("--log", "\\d+ms", "--app", "a&b", "--proc", "web|worker", "h").path,
            "/?app=a%26b&proc=web%7Cworker&log=%5Cd%2Bms",
        )

    def test_flagReplacesURL(self) -> None:
        """
        A flag replaces the URL's parameter (every one of that name) in its
        place; the rest of the query is kept as given.
        """
        found = subscription("--app", "new", "http://h/s?app=old&proc=web|worker&app=older&x")
        self.assertEqual(found.path, "/s?app=new&proc=web|worker&x")

    def test_replayFlags(self) -> None:
        """
        -n, --no-follow and --json add tail=, follow=0 and format=json; a reconnection drops tail=.
        """
        found = subscription("-n", "5", "--no-follow", "--json", "h/?app=a")
        self.assertEqual(found.path, "/?app=a&tail=5&follow=0&format=json")
        self.assertEqual(found.again, "/?app=a&follow=0&format=json")
        self.assertEqual((found.follow, found.json), (False, True))
        following = subscription("-n", "5", "h")
        self.assertEqual((following.path, following.again), ("/?tail=5", "/"))
        self.assertEqual((following.follow, following.json), (True, False))

    def test_urlReplayParameters(self) -> None:
        """
        The URL's own tail=, follow=0 and format=json count as the flags would,
        and the flags replace them: -f sends follow=1, -n 0 no tail=.
        """
        found = subscription("http://h/?tail=9&follow=0&format=json")
        self.assertEqual(found.again, "/?follow=0&format=json")
        self.assertEqual((found.follow, found.json), (False, True))
        replaced = subscription("-f", "-n", "0", "http://h/?tail=9&follow=0")
        self.assertEqual((replaced.path, replaced.follow), ("/?follow=1", True))

    def test_unsendableEncoded(self) -> None:
        """
        Spaces and non-ASCII characters in the URL are percent-encoded; its escapes are kept.
        """
        self.assertEqual(
            subscription("http://h/a b?log=caf\u00e9 x&app=%41").path,
            "/a%20b?log=caf%C3%A9%20x&app=%41",
        )


class TailTests(SynchronousTestCase):
    """
    C{logio tail URL} prints a subscription's lines as they come.
    """

    def tail(self, *args: str) -> Running:
        return Running(self, logio("tail", *args), stdout=subprocess.PIPE)

    def test_printsLines(self) -> None:
        """
        It requests the URL's path and query and prints the stream unchanged when piped.
        """
        stub = HTTPStub(self)
        tail = self.tail(f"http://127.0.0.1:{stub.port}/?app=myapp&proc=web|worker")
        conn = stub.next()
        self.assertEqual(stub.requests, [b"GET /?app=myapp&proc=web|worker HTTP/1.1"])
        conn.sendall(STREAM_HEAD + chunk(b"t1 myapp[web] h: one\nt2 myapp[web] h: t"))
        conn.sendall(chunk(b"wo\n"))
        tail.waitOut(b"two\n")
        self.assertEqual(tail.out, b"t1 myapp[web] h: one\nt2 myapp[web] h: two\n")

    def test_token(self) -> None:
        """
        --token is sent as a Bearer token; $LOGIO_TOKEN is its default.
        """
        stub = HTTPStub(self)
        self.tail("--token", "t0ken", f"http://127.0.0.1:{stub.port}/")
        stub.next()
        self.assertIn(b"\r\nAuthorization: Bearer t0ken\r\n", stub.heads[0])
        self.patch(os, "environ", {**os.environ, "LOGIO_TOKEN": "from-env"})
        self.assertEqual(parseArguments(["tail"]).token, "from-env")
        self.assertEqual(parseArguments(["tail", "--token", "mine"]).token, "mine")

    def test_flagsInRequestLine(self) -> None:
        """
        The filter flags go URL-encoded into the request, replacing the URL's parameter.
        """
        stub = HTTPStub(self)
        self.tail(
            "--log", "\\d+ms", "--app", "new", f"127.0.0.1:{stub.port}/?app=old&proc=web|worker"
        )
        stub.next()
        self.assertEqual(stub.requests, [b"GET /?app=new&proc=web|worker&log=%5Cd%2Bms HTTP/1.1"])

    def test_noFollow(self) -> None:
        """
        With -n 5 --no-follow --json it asks for the replay as JSON, prints it
        unchanged (no colour, even with --color always) and exits 0 when the
        response ends, without reconnecting.
        """
        stub = HTTPStub(self)
        tail = self.tail(
            "-n",
            "5",
            "--no-follow",
            "--json",
            "--color",
            "always",
            f"http://127.0.0.1:{stub.port}/",
        )
        records = (
            b'{"seq": 1, "time": "2026-11-26T10:51:39.289Z", "app": "a", "proc": "b", '
            b'"host": "h", "log": "x] y"}\n'
            b'{"seq": 2, "time": "2026-11-26T10:51:39.290Z", "app": "a", "proc": "b", '
            b'"host": "h", "log": "z"}\n'
        )
        stub.next().sendall(STREAM_HEAD + chunk(records) + STREAM_END)
        self.assertEqual(tail.wait(), 0, tail.err)
        self.assertEqual((tail.out, tail.err), (records, b""))
        self.assertEqual(stub.requests, [b"GET /?tail=5&follow=0&format=json HTTP/1.1"])

    def test_noFollowCut(self) -> None:
        """
        With --no-follow a response cut short is one line on stderr and status 1, no reconnecting.
        """
        stub = HTTPStub(self)
        tail = self.tail("--no-follow", f"127.0.0.1:{stub.port}")
        conn = stub.next()
        conn.sendall(STREAM_HEAD + chunk(b"t a[p] h: whole\nt a[p] h: cut"))
        tail.waitOut(b"cut")
        conn.shutdown(socket.SHUT_RDWR)
        self.assertEqual(tail.wait(), 1)
        self.assertEqual(tail.out, b"t a[p] h: whole\nt a[p] h: cut\n")
        self.assertEqual(
            tail.err, f"logio tail: 127.0.0.1:{stub.port}: the stream was cut short\n".encode()
        )
        self.assertEqual(stub.requests, [b"GET /?follow=0 HTTP/1.1"])

    def test_noFollowServerAway(self) -> None:
        """
        With --no-follow a server that cannot be reached is one line on stderr and status 1.
        """
        port = freePort()
        tail = self.tail("--no-follow", f"127.0.0.1:{port}")
        self.assertEqual(tail.wait(), 1)
        self.assertRegex(
            tail.err, f"^logio tail: 127\\.0\\.0\\.1:{port}: .*Connection refused\n$".encode()
        )

    def test_reconnectDoesNotReplay(self) -> None:
        """
        Only the first connection that gets the stream asks for tail=: a retry
        after a 503 asks again, the reconnection after the stream does not.
        """
        stub = HTTPStub(self)
        tail = self.tail("-n", "5", f"http://127.0.0.1:{stub.port}/?app=a")
        unavailable = stub.next()
        unavailable.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        unavailable.close()
        stub.next().sendall(STREAM_HEAD + chunk(b"t a[p] h: replayed\n") + STREAM_END)
        stub.next().sendall(STREAM_HEAD + chunk(b"t a[p] h: new\n"))
        tail.waitOut(b"new\n")
        self.assertEqual(tail.out, b"t a[p] h: replayed\nt a[p] h: new\n")
        self.assertEqual(
            stub.requests,
            [
                b"GET /?app=a&tail=5 HTTP/1.1",
                b"GET /?app=a&tail=5 HTTP/1.1",
                b"GET /?app=a HTTP/1.1",
            ],
        )

    def test_ctrlC(self) -> None:
        """
        Ctrl-C ends it quietly, with the usual status 130.
        """
        stub = HTTPStub(self)
        tail = self.tail(f"http://127.0.0.1:{stub.port}/")
        stub.next().sendall(STREAM_HEAD + chunk(b"t a[b] h: x\n"))
        tail.waitOut(b"x\n")
        self.assertEqual(tail.interrupt(), 130)
        self.assertEqual(tail.err, b"")

    def test_reconnects(self) -> None:
        """
        When the stream ends or the server goes away it says so, reconnects and goes on printing.
        """
        stub = HTTPStub(self)
        tail = self.tail(f"http://127.0.0.1:{stub.port}/?app=a")
        first = stub.next()
        first.sendall(STREAM_HEAD + chunk(b"t a[p] h: first\n") + STREAM_END)
        second = stub.next()
        tail.waitErr(b"the server ended the stream; reconnecting in ")
        second.sendall(STREAM_HEAD + chunk(b"t a[p] h: second\n"))
        tail.waitOut(b"second\n")
        port = stub.port
        stub.stop()
        tail.waitErr(b"Connection refused; reconnecting in")
        again = HTTPStub(self, port)
        again.next().sendall(STREAM_HEAD + chunk(b"t a[p] h: third\n"))
        tail.waitOut(b"third\n")
        tail.waitErr(f"logio tail: connected to 127.0.0.1:{port} again\n".encode())
        self.assertEqual(tail.out, b"t a[p] h: first\nt a[p] h: second\nt a[p] h: third\n")
        self.assertEqual(len(stub.requests) + len(again.requests), 3)

    def test_cutLineEnded(self) -> None:
        """
        A line cut short by a broken connection is ended, so the next starts on its own line.
        """
        stub = HTTPStub(self)
        tail = self.tail(f"http://127.0.0.1:{stub.port}/")
        first = stub.next()
        first.sendall(STREAM_HEAD + chunk(b"t a[p] h: whole\nt a[p] h: cut"))
        tail.waitOut(b"cut")
        first.shutdown(socket.SHUT_RDWR)
        stub.next().sendall(STREAM_HEAD + chunk(b"t a[p] h: next\n"))
        tail.waitOut(b"next\n")
        self.assertEqual(tail.out, b"t a[p] h: whole\nt a[p] h: cut\nt a[p] h: next\n")

    def test_refused(self) -> None:
        """
        A 4xx answer (a bad regex) ends it with one line on stderr and status 1, no retrying.
        """
        stub = HTTPStub(self)
        tail = self.tail(f"http://127.0.0.1:{stub.port}/?app=(")
        body = b"bad regular expression for app: missing )\n"
        stub.next().sendall(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.assertEqual(tail.wait(), 1)
        self.assertEqual(
            tail.err,
            b"logio tail: the server refused the subscription: "
            b"400 Bad Request: bad regular expression for app: missing )\n",
        )

    def test_closedOutput(self) -> None:
        """
        When its reader goes away (logio tail URL | head -1) it ends quietly.
        """
        stub = HTTPStub(self)
        reader, writer = os.pipe()
        tail = Running(self, logio("tail", f"http://127.0.0.1:{stub.port}/"), stdout=writer)
        os.close(writer)
        conn = stub.next()
        conn.sendall(STREAM_HEAD + chunk(b"t a[b] h: 1\n"))
        self.assertEqual(os.read(reader, 100), b"t a[b] h: 1\n")
        os.close(reader)
        conn.sendall(chunk(b"t a[b] h: more\n"))
        self.assertEqual(tail.process.wait(20), 0)
        self.assertEqual(tail.err, b"")

    def test_https(self) -> None:
        """
        https:// URLs are verified with --ca.
        """
        paths = certificates(self.mktemp(), ["localhost"])
        stub = HTTPStub(self, tls=serverContext(paths))
        tail = self.tail("--ca", paths["ca"], f"https://localhost:{stub.port}/?app=a")
        stub.next().sendall(STREAM_HEAD + chunk(b"t a[b] h: private\n"))
        tail.waitOut(b"private\n")

    def test_httpsUnknownCA(self) -> None:
        """
        Without the right CA the certificate is refused: it says why and
        exits 1 (retrying cannot help).
        """
        paths = certificates(self.mktemp(), ["localhost"])
        stub = HTTPStub(self, tls=serverContext(paths))
        tail = self.tail(f"https://localhost:{stub.port}/?app=a")
        self.assertEqual(tail.process.wait(20), 1)
        tail.waitErr(b"certificate verify failed")
        self.assertEqual(stub.requests, [])

    def test_coloursOnTerminal(self) -> None:
        """
        On a terminal app[proc] gets one colour per topic, the server's notices bold red.
        """
        stub = HTTPStub(self)
        master, slave = pty.openpty()
        self.addCleanup(os.close, master)
        tail = Running(self, logio("tail", f"http://127.0.0.1:{stub.port}/"), stdout=slave)
        os.close(slave)
        stub.next().sendall(
            STREAM_HEAD
            + chunk(
                b"t1 web[1] h: a\nt2 db[main] h: b\nt3 web[1] h: c\n"
                b"t4 logio[logio] s: 5 lines dropped\n"
            )
        )
        seen = b""

        def complete() -> bool:
            nonlocal seen
            seen += os.read(master, 65536)
            return b"dropped" in seen

        waitFor(complete, what="the coloured lines")
        lines = seen.split(b"\r\n")
        web = lines[0].split(b"web[1]")[0][len(b"t1 ") :]
        db = lines[1].split(b"db[main]")[0][len(b"t2 ") :]
        self.assertRegex(web, rb"^\x1b\[\d+m$")
        self.assertNotEqual(web, db)
        self.assertEqual(lines[0], b"t1 " + web + b"web[1]\x1b[0m h: a")
        self.assertEqual(lines[2], b"t3 " + web + b"web[1]\x1b[0m h: c")
        self.assertEqual(lines[3], b"t4 \x1b[1;31mlogio[logio]\x1b[0m s: 5 lines dropped")
        self.assertEqual(tail.interrupt(), 130)

    def test_colourAlways(self) -> None:
        """
        --color=always colours even when stdout is a pipe.
        """
        stub = HTTPStub(self)
        tail = self.tail("--color", "always", f"http://127.0.0.1:{stub.port}/")
        stub.next().sendall(STREAM_HEAD + chunk(b"t a[b] h: x\n"))
        tail.waitOut(b"x\n")
        self.assertRegex(tail.out, rb"^t \x1b\[\d+ma\[b\]\x1b\[0m h: x\n$")
