"""
Tests for C{logio tail}: run as a subprocess against L{HTTPStub}, a
scripted HTTP server that sends the server's event stream; and, directly,
its URL building (L{subscriptionURL}) and what it prints for each event
(L{logio.client.events}), compared with what the server's own formats send.
"""

from __future__ import annotations

import io
import os
import pty
import queue
import socket
import ssl
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from logio.client import tail
from logio.client.cli import parseArguments
from logio.client.events import Event, EventReader, Printer, noticeMessage
from logio.client.tail import RECONNECT_MAX, Subscription, _Follower, _Refused, subscriptionURL
from logio.formats import SHUTTING_DOWN, JSONFormat, SSEFormat, TextFormat
from logio.interfaces import IFormat
from logio.topic import Topic
from tests.support.http import chunk
from tests.support.ports import freePort
from tests.support.processes import Running, logio
from tests.support.sink import TestServer
from tests.support.tls import certificates, serverContext
from tests.support.waiting import waitFor

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
STREAM_END = b"0\r\n\r\n"
#: The start of the run whose event ids the stubs send.
START = 1700000000000
#: The time of every record the stubs send, as the text output shows it.
TS = "2026-11-26T10:51:39.289"
TOPIC = Topic("a", "p", "h")


def records(*texts: str, first: int = 1, topic: Topic = TOPIC) -> bytes:
    """
    The events of records with C{texts}, numbered from C{first}, as the
    server's event stream sends them.
    """
    seqs = list(range(first, first + len(texts)))
    encode = SSEFormat(START).encoder(topic)
    return b"".join(s.data for s in encode([(TS, text, None) for text in texts], seqs))


def lines(*texts: str, topic: Topic = TOPIC) -> bytes:
    """
    The text lines of one-line records with C{texts}.
    """
    return "".join(f"{TS}{topic.prefix()}{text}\n" for text in texts).encode()


def notice(message: str) -> bytes:
    """
    A notice event with C{message}, as the server's event stream sends it.
    """
    return SSEFormat(START).notice(TS, message)


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
            ([], ("http", "localhost", 7702, "/?format=sse")),
            (["h"], ("http", "h", 7702, "/?format=sse")),
            (["h:9000"], ("http", "h", 9000, "/?format=sse")),
            (["h:9000/x?app=a"], ("http", "h", 9000, "/x?app=a&format=sse")),
            (["[::1]:9000"], ("http", "::1", 9000, "/?format=sse")),
            (["http://h/"], ("http", "h", 80, "/?format=sse")),
            (["http://h:9000"], ("http", "h", 9000, "/?format=sse")),
            (["https://h/?app=a"], ("https", "h", 443, "/?app=a&format=sse")),
            (["HTTPS://h:9443/"], ("https", "h", 9443, "/?format=sse")),
        ]:
            self.assertEqual(subscription(*args)[:4], where, args)

    def test_badURLs(self) -> None:
        """
        Another scheme, no host, a bad port or a format tail cannot print is
        a ValueError that names the URL.
        """
        for url, says in [
            ("ftp://h/", "URL 'ftp://h/' must look like http://HOST[:PORT]/?app=RE"),
            ("http:///?app=a", "URL 'http:///?app=a' must look like http://"),
            ("h:99999", "URL 'h:99999' has a bad port"),
            ("h/?format=sse", "URL 'h/?format=sse' asks for format=sse: logio tail prints"),
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
            "/?app=a%26b&proc=web%7Cworker&log=%5Cd%2Bms&format=sse",
        )

    def test_level(self) -> None:
        """
        --level LEVEL is level=LEVEL, replacing the URL's; the server checks the name.
        """
        self.assertEqual(subscription("--level", "warn", "h").path, "/?level=warn&format=sse")
        self.assertEqual(
            subscription("--level", "error", "h/?level=info&app=a").again,
            "/?level=error&app=a&format=sse",
        )
        self.assertEqual(subscription("h/?level=info").path, "/?level=info&format=sse")

    def test_timeRange(self) -> None:
        """
        --since and --until are since= and until=; a reconnection asks for
        neither the tail nor the start of the range again (it resumes after
        the last record printed), and a range with an end is not followed
        past it.
        """
        ranged = subscription("--since", "1h", "-n", "5", "h/?app=a")
        self.assertEqual(ranged.path, "/?app=a&since=1h&tail=5&format=sse")
        self.assertEqual(ranged.again, "/?app=a&format=sse")
        self.assertTrue(ranged.follow)
        ended = subscription("--since", "2h", "--until", "2026-12-05T02:00:00Z", "h")
        self.assertEqual(ended.path, "/?since=2h&until=2026-12-05T02%3A00%3A00Z&format=sse")
        self.assertFalse(ended.follow)

    def test_flagReplacesURL(self) -> None:
        """
        A flag replaces the URL's parameter (every one of that name) in its
        place; the rest of the query is kept as given.
        """
        found = subscription("--app", "new", "http://h/s?app=old&proc=web|worker&app=older&x")
        self.assertEqual(found.path, "/s?app=new&proc=web|worker&x&format=sse")

    def test_replayFlags(self) -> None:
        """
        -n and --no-follow add tail= and follow=0, --json prints JSON; the
        server is always asked for its events; a reconnection drops tail=.
        """
        found = subscription("-n", "5", "--no-follow", "--json", "h/?app=a")
        self.assertEqual(found.path, "/?app=a&tail=5&follow=0&format=sse")
        self.assertEqual(found.again, "/?app=a&follow=0&format=sse")
        self.assertEqual((found.follow, found.json), (False, True))
        following = subscription("-n", "5", "h")
        self.assertEqual((following.path, following.again), ("/?tail=5&format=sse", "/?format=sse"))
        self.assertEqual((following.follow, following.json), (True, False))

    def test_urlReplayParameters(self) -> None:
        """
        The URL's own tail=, follow=0 and format=json count as the flags would,
        and the flags replace them: -f sends follow=1, -n 0 no tail=.
        """
        found = subscription("http://h/?tail=9&follow=0&format=json")
        self.assertEqual(found.again, "/?follow=0&format=sse")
        self.assertEqual((found.follow, found.json), (False, True))
        replaced = subscription("-f", "-n", "0", "http://h/?tail=9&follow=false")
        self.assertEqual((replaced.path, replaced.follow), ("/?follow=1&format=sse", True))
        self.assertFalse(subscription("http://h/?follow=No").follow)
        text = subscription("http://h/?format=text&app=a")
        self.assertEqual((text.path, text.json), ("/?format=sse&app=a", False))
        self.assertTrue(subscription("--json", "http://h/?format=text").json)

    def test_lastEventId(self) -> None:
        """
        The URL's last_event_id= is where the first request resumes: it goes
        in the Last-Event-ID header, as every later one's does.
        """
        found = subscription("http://h/?last_event_id=17-4&app=a&last_event_id=1-1")
        self.assertEqual((found.path, found.again), ("/?app=a&format=sse", "/?app=a&format=sse"))
        self.assertEqual(found.lastEventId, "17-4")
        self.assertIsNone(subscription("h").lastEventId)

    def test_ansi(self) -> None:
        """
        The URL's ansi=keep or ansi=escape decides whether colour sequences
        are kept, and is sent on; without it, the colours decide.
        """
        for query, keep in [("", None), ("?ansi=keep", True), ("?ansi=ESCAPE", False)]:
            found = subscription(f"h/{query}")
            self.assertEqual(found.keepSGR, keep, query)
        self.assertEqual(subscription("h/?ansi=keep").path, "/?ansi=keep&format=sse")

    def test_unsendableEncoded(self) -> None:
        """
        Spaces and non-ASCII characters in the URL are percent-encoded; its escapes are kept.
        """
        self.assertEqual(
            subscription("http://h/a b?log=caf\u00e9 x&app=%41").path,
            "/a%20b?log=caf%C3%A9%20x&app=%41&format=sse",
        )


#: Records that show every rule of the text output: several lines, empty
#: lines, a trailing newline, escapes, colours, non-ASCII text.
TEXTS = [
    "plain",
    "first\nsecond\n\nfourth",
    "ends with a newline\n",
    "bell\x07 escape\x1b[2J del\x7f c1\x85 bidi\u202e tab\tend",
    "\x1b[31mred\x1b[0m and \x1b[1;4mbold\nsecond \x1b[32mgreen",
    "caf\u00e9 \u65e5\u672c \U0001f600",
    "",
]


def shown(printer: Printer, stream: bytes) -> bytes:
    """
    What C{printer} prints for the events of C{stream}, fed a byte at a time.
    """
    reader = EventReader()
    return b"".join(
        printer.show(event) for i in range(len(stream)) for event in reader.feed(stream[i : i + 1])
    )


class PrinterTests(SynchronousTestCase):
    """
    What tail prints for the server's events is byte for byte what the
    server's text and JSON outputs send for the same records and notices.
    """

    def setUp(self) -> None:
        self.topic = Topic("web", "1", "box")
        self.seqs = list(range(40, 40 + len(TEXTS)))
        self.records = [(TS, text, None) for text in TEXTS]
        self.events = b"".join(
            segment.data
            for segment in SSEFormat(START).encoder(self.topic)(self.records, self.seqs)
        )

    def serverOutput(self, format: IFormat) -> bytes:
        return b"".join(s.data for s in format.encoder(self.topic)(self.records, self.seqs))

    def test_text(self) -> None:
        """
        Without colours: the text output's lines, escapes and multi-line records included.
        """
        printer = Printer(json=False, colour=False, keepSGR=False, host="server")
        self.assertEqual(shown(printer, self.events), self.serverOutput(TextFormat("server")))

    def test_textKeepingSGR(self) -> None:
        """
        Keeping colour sequences: the text output of ansi=keep, a reset ending each coloured line.
        """
        printer = Printer(json=False, colour=False, keepSGR=True, host="server")
        printed = shown(printer, self.events)
        self.assertEqual(printed, self.serverOutput(TextFormat("server", keepSGR=True)))
        self.assertIn(b"\x1b[31mred\x1b[0m and \x1b[1;4mbold\x1b[0m\n", printed)
        self.assertIn(b"bell\\u0007 escape\\u001b[2J del", printed)

    def test_json(self) -> None:
        """
        With --json: the JSON output's lines.
        """
        printer = Printer(json=True, colour=False, keepSGR=False, host="server")
        self.assertEqual(shown(printer, self.events), self.serverOutput(JSONFormat()))

    def test_notices(self) -> None:
        """
        Notices, drop notices included, print as the text and JSON outputs
        send them, with the URL's host for the server's.
        """
        text = Printer(json=False, colour=False, keepSGR=True, host="server")
        json = Printer(json=True, colour=False, keepSGR=False, host="server")
        sse = SSEFormat(START)
        for message, dropped in [
            ("the server is shutting down", None),
            ("odd \x1b[31m\u202e", None),
            ("5 lines dropped: this subscriber is reading too slowly", 5),
        ]:
            events = sse.notice(TS, message, dropped)
            self.assertEqual(shown(text, events), TextFormat("server").notice(TS, message, dropped))
            self.assertEqual(shown(json, events), JSONFormat().notice(TS, message, dropped))
            (event,) = EventReader().feed(events)
            self.assertEqual(noticeMessage(event), message)

    def test_colours(self) -> None:
        """
        With colours, app[proc] gets one colour per topic, the same on
        every line of a record; the server's notices are bold red.
        """
        printer = Printer(json=False, colour=True, keepSGR=False, host="server")
        web = shown(printer, records("1\n2", topic=Topic("web", "1", "h")))
        db = shown(printer, records("3", topic=Topic("db", "main", "h")))
        colour = web.split(b"web[1]")[0][len(TS) + 1 :]
        self.assertRegex(colour, rb"^\x1b\[\d+m$")
        self.assertNotIn(colour, db)
        self.assertEqual(
            web,
            b"".join(
                TS.encode() + b" " + colour + b"web[1]\x1b[0m h: %s\n" % n for n in [b"1", b"2"]
            ),
        )
        self.assertEqual(
            shown(printer, notice("5 lines dropped")),
            f"{TS} \x1b[1;31mlogio[logio]\x1b[0m server: 5 lines dropped\n".encode(),
        )

    def test_reader(self) -> None:
        """
        The reader skips comments (keep-alives), takes CRLF line ends and
        joins data lines; only records have ids; an event is whole only at
        its blank line.
        """
        reader = EventReader()
        self.assertEqual(reader.feed(b": keep-alive\n\nid: 1-2\r\ndata: {\ndata:}\r\n"), [])
        self.assertEqual(
            reader.feed(b"\nevent: notice\ndata: {}\n\n"),
            [Event("message", "1-2", b"{\n}"), Event("notice", None, b"{}")],
        )
        (event,) = EventReader().feed(notice("gone"))
        self.assertIsNone(event.id)

    def test_notLogio(self) -> None:
        """
        An event that is not a logio record or notice prints as it came, escaped.
        """
        printer = Printer(json=False, colour=False, keepSGR=False, host="server")
        self.assertEqual(shown(printer, b"data: [1, \x1b]\n\n"), b"[1, \\u001b]\n")


class TailTests(SynchronousTestCase):
    """
    C{logio tail URL} prints a subscription's events as they come, and
    resumes after the last record printed when it reconnects.
    """

    def tail(self, *args: str) -> Running:
        return Running(self, logio("tail", *args), stdout=subprocess.PIPE)

    def test_printsLines(self) -> None:
        """
        It requests the URL's path and query with format=sse and prints the
        records as text lines, each as soon as its event is whole.
        """
        stub = HTTPStub(self)
        tail = self.tail(f"http://127.0.0.1:{stub.port}/?app=myapp&proc=web|worker")
        conn = stub.next()
        self.assertEqual(stub.requests, [b"GET /?app=myapp&proc=web|worker&format=sse HTTP/1.1"])
        self.assertIn(b"\r\nAccept: text/event-stream\r\n", stub.heads[0])
        self.assertNotIn(b"Last-Event-ID", stub.heads[0])
        events = records("one", "two")
        conn.sendall(STREAM_HEAD + chunk(events[:-10]))
        tail.waitOut(b"one\n")
        conn.sendall(chunk(events[-10:]))
        tail.waitOut(b"two\n")
        self.assertEqual(tail.out, lines("one", "two"))

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
            "--log",
            "\\d+ms",
            "--app",
            "new",
            "--level",
            "warn",
            f"127.0.0.1:{stub.port}/?app=old&proc=web|worker",
        )
        stub.next()
        self.assertEqual(
            stub.requests,
            [b"GET /?app=new&proc=web|worker&log=%5Cd%2Bms&level=warn&format=sse HTTP/1.1"],
        )

    def test_noFollow(self) -> None:
        """
        With -n 5 --no-follow --json it asks for the replay, prints it as
        JSON lines (no colour, even with --color always) and exits 0 when
        the response ends, without reconnecting.
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
        stub.next().sendall(STREAM_HEAD + chunk(records("x] y", "z")) + STREAM_END)
        self.assertEqual(tail.wait(), 0, tail.err)
        self.assertEqual(
            (tail.out, tail.err),
            (
                f'{{"seq": 1, "time": "{TS}Z", "app": "a", "proc": "p", "host": "h", '
                f'"log": "x] y"}}\n'
                f'{{"seq": 2, "time": "{TS}Z", "app": "a", "proc": "p", "host": "h", '
                f'"log": "z"}}\n'.encode(),
                b"",
            ),
        )
        self.assertEqual(stub.requests, [b"GET /?tail=5&follow=0&format=sse HTTP/1.1"])

    def test_noFollowCut(self) -> None:
        """
        With --no-follow a response cut short is one line on stderr and
        status 1, no reconnecting; the event cut short is not printed.
        """
        stub = HTTPStub(self)
        tail = self.tail("--no-follow", f"127.0.0.1:{stub.port}")
        conn = stub.next()
        conn.sendall(STREAM_HEAD + chunk(records("whole") + records("cut", first=2)[:-2]))
        tail.waitOut(b"whole\n")
        conn.shutdown(socket.SHUT_RDWR)
        self.assertEqual(tail.wait(), 1)
        self.assertEqual(tail.out, lines("whole"))
        self.assertEqual(
            tail.err, f"logio tail: 127.0.0.1:{stub.port}: the stream was cut short\n".encode()
        )
        self.assertEqual(stub.requests, [b"GET /?follow=0&format=sse HTTP/1.1"])

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

    def test_reconnectResumes(self) -> None:
        """
        Only the first connection that gets the stream asks for tail=: a
        retry after a 503 asks again; the reconnection after the stream
        instead sends the id of the last record printed as Last-Event-ID.
        """
        stub = HTTPStub(self)
        tail = self.tail("-n", "5", f"http://127.0.0.1:{stub.port}/?app=a")
        unavailable = stub.next()
        unavailable.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        unavailable.close()
        stub.next().sendall(STREAM_HEAD + chunk(records("replayed", first=7)) + STREAM_END)
        stub.next().sendall(STREAM_HEAD + chunk(records("new", first=8)))
        tail.waitOut(b"new\n")
        self.assertEqual(tail.out, lines("replayed", "new"))
        self.assertEqual(
            stub.requests,
            [
                b"GET /?app=a&tail=5&format=sse HTTP/1.1",
                b"GET /?app=a&tail=5&format=sse HTTP/1.1",
                b"GET /?app=a&format=sse HTTP/1.1",
            ],
        )
        self.assertEqual(
            [b"Last-Event-ID" in head for head in stub.heads[:2]], [False, False], stub.heads
        )
        self.assertIn(f"\r\nLast-Event-ID: {START}-7\r\n".encode(), stub.heads[2])

    def test_lastEventIdInURL(self) -> None:
        """
        The URL's last_event_id= is sent as Last-Event-ID until a record replaces it.
        """
        stub = HTTPStub(self)
        self.tail(f"http://127.0.0.1:{stub.port}/?last_event_id=9-3")
        stub.next().sendall(STREAM_HEAD + STREAM_END)
        stub.next()
        self.assertEqual(stub.requests, [b"GET /?format=sse HTTP/1.1"] * 2)
        for head in stub.heads:
            self.assertIn(b"\r\nLast-Event-ID: 9-3\r\n", head)

    def test_ctrlC(self) -> None:
        """
        Ctrl-C ends it quietly, with the usual status 130.
        """
        stub = HTTPStub(self)
        tail = self.tail(f"http://127.0.0.1:{stub.port}/")
        stub.next().sendall(STREAM_HEAD + chunk(records("x")))
        tail.waitOut(b"x\n")
        self.assertEqual(tail.interrupt(), 130)
        self.assertEqual(tail.err, b"")

    def test_shutdown(self) -> None:
        """
        The server's last notice is printed and said on stderr, once however
        many attempts the reconnection takes, and so is the reconnection;
        then it resumes after the last record printed.
        """
        stub = HTTPStub(self)
        port = stub.port
        tail = self.tail(f"http://127.0.0.1:{port}/")
        stub.next().sendall(
            STREAM_HEAD + chunk(records("before", first=3) + notice(SHUTTING_DOWN)) + STREAM_END
        )
        shutdown = f"logio tail: 127.0.0.1:{port}: {SHUTTING_DOWN}; reconnecting\n".encode()
        tail.waitErr(shutdown)
        # It tries again at once; that attempt fails, then others are
        # refused until the server is back: nothing more is said.
        waitFor(lambda: len(stub.requests) == 2, what="a reconnection")
        stub.stop()
        again = HTTPStub(self, port)
        again.next().sendall(STREAM_HEAD + chunk(records("after", first=4)))
        tail.waitOut(b"after\n")
        self.assertEqual(
            tail.out,
            lines("before")
            + f"{TS} logio[logio] 127.0.0.1: {SHUTTING_DOWN}\n".encode()
            + lines("after"),
        )
        self.assertEqual(
            tail.err, shutdown + f"logio tail: connected to 127.0.0.1:{port} again\n".encode()
        )
        self.assertIn(f"\r\nLast-Event-ID: {START}-3\r\n".encode(), again.heads[0])

    def test_reconnects(self) -> None:
        """
        When the stream ends or the server goes away it says so, reconnects
        and goes on printing after the last record printed.
        """
        stub = HTTPStub(self)
        port = stub.port
        tail = self.tail(f"http://127.0.0.1:{port}/?app=a")
        stub.next().sendall(STREAM_HEAD + chunk(records("first")) + STREAM_END)
        second = stub.next()
        tail.waitErr(b"the server ended the stream; reconnecting\n")
        second.sendall(STREAM_HEAD + chunk(records("second", first=2)))
        tail.waitOut(b"second\n")
        tail.waitErr(f"logio tail: connected to 127.0.0.1:{port} again\n".encode())
        stub.stop()
        again = HTTPStub(self, port)
        again.next().sendall(STREAM_HEAD + chunk(records("third", first=3)))
        tail.waitOut(b"third\n")
        self.assertEqual(tail.out, lines("first", "second", "third"))
        self.assertEqual(len(stub.requests) + len(again.requests), 3)
        self.assertIn(f"\r\nLast-Event-ID: {START}-2\r\n".encode(), again.heads[0])
        self.assertEqual(tail.err.count(b"reconnecting"), 2, tail.err)
        self.assertEqual(tail.err.count(b"again\n"), 2, tail.err)

    def test_cutEventResent(self) -> None:
        """
        An event cut short by a broken connection is not printed: the
        reconnection resumes after the last whole one and gets it again.
        """
        stub = HTTPStub(self)
        tail = self.tail(f"http://127.0.0.1:{stub.port}/")
        first = stub.next()
        first.sendall(STREAM_HEAD + chunk(records("whole") + records("cut", first=2)[:-1]))
        tail.waitOut(b"whole\n")
        first.shutdown(socket.SHUT_RDWR)
        stub.next().sendall(STREAM_HEAD + chunk(records("cut", "next", first=2)))
        tail.waitOut(b"next\n")
        self.assertEqual(tail.out, lines("whole", "cut", "next"))
        self.assertIn(f"\r\nLast-Event-ID: {START}-1\r\n".encode(), stub.heads[1])
        tail.waitErr(b"the stream was cut short; reconnecting\n")

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
        conn.sendall(STREAM_HEAD + chunk(records("1")))
        self.assertEqual(os.read(reader, 100), lines("1"))
        os.close(reader)
        conn.sendall(chunk(records("more", first=2)))
        self.assertEqual(tail.process.wait(20), 0)
        self.assertEqual(tail.err, b"")

    def test_https(self) -> None:
        """
        https:// URLs are verified with --ca.
        """
        paths = certificates(self.mktemp(), ["localhost"])
        stub = HTTPStub(self, tls=serverContext(paths))
        tail = self.tail("--ca", paths["ca"], f"https://localhost:{stub.port}/?app=a")
        stub.next().sendall(STREAM_HEAD + chunk(records("private")))
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

    def test_terminal(self) -> None:
        """
        On a terminal app[proc] is coloured and the records' own colour
        sequences are kept, anything else escaped.
        """
        stub = HTTPStub(self)
        controller, terminal = pty.openpty()
        self.addCleanup(os.close, controller)
        tail = Running(self, logio("tail", f"http://127.0.0.1:{stub.port}/"), stdout=terminal)
        os.close(terminal)
        stub.next().sendall(
            STREAM_HEAD + chunk(records("\x1b[31mred\x07") + notice("5 lines dropped"))
        )
        seen = b""

        def complete() -> bool:
            nonlocal seen
            seen += os.read(controller, 65536)
            return b"dropped" in seen

        waitFor(complete, what="the coloured lines")
        record, dropped = seen.split(b"\r\n")[:2]
        self.assertRegex(record, rb"^\S+ \x1b\[\d+ma\[p\]\x1b\[0m h: \x1b\[31mred\\u0007\x1b\[0m$")
        self.assertEqual(
            dropped, f"{TS} \x1b[1;31mlogio[logio]\x1b[0m 127.0.0.1: 5 lines dropped".encode()
        )
        self.assertEqual(tail.interrupt(), 130)

    def test_colourAlways(self) -> None:
        """
        --color=always colours even when stdout is a pipe, colour sequences kept.
        """
        stub = HTTPStub(self)
        tail = self.tail("--color", "always", f"http://127.0.0.1:{stub.port}/")
        stub.next().sendall(STREAM_HEAD + chunk(records("\x1b[1mx")))
        tail.waitOut(b"x\x1b[0m\n")
        self.assertRegex(tail.out, rb"^\S+ \x1b\[\d+ma\[p\]\x1b\[0m h: \x1b\[1mx\x1b\[0m\n$")

    def test_escapedWhenPiped(self) -> None:
        """
        Piped, colour sequences are shown escaped, unless the URL says ansi=keep.
        """
        stub = HTTPStub(self)
        piped = self.tail(f"http://127.0.0.1:{stub.port}/")
        kept = self.tail(f"http://127.0.0.1:{stub.port}/?ansi=keep")
        for conn in [stub.next(), stub.next()]:
            conn.sendall(STREAM_HEAD + chunk(records("\x1b[1mx")))
        piped.waitOut(b"\n")
        kept.waitOut(b"\n")
        self.assertEqual(piped.out, lines("\\u001b[1mx"))
        self.assertEqual(kept.out, lines("\x1b[1mx\x1b[0m"))


class ReconnectTests(SynchronousTestCase):
    """
    How long C{logio tail} waits between attempts while the server is away.
    """

    def test_waitsAtMostTwoSeconds(self) -> None:
        """
        The wait doubles from the first failure on, jittered, and never
        exceeds L{RECONNECT_MAX} (2 s), so a server that is back is found
        within about 2 s.
        """
        follower = _Follower(
            subscription(), None, None, Printer(False, False, False, "h"), io.BytesIO()
        )
        waits: list[float] = []
        attempts = 12

        def stream() -> tuple[str, float]:
            if len(waits) >= attempts:
                raise _Refused("400 Bad Request: enough")
            raise OSError("connection refused")

        self.patch(follower, "_stream", stream)
        self.patch(tail.time, "sleep", waits.append)
        self.patch(tail, "_say", lambda message: None)
        self.assertEqual(follower.run(), 1)
        self.assertEqual(len(waits), attempts)
        self.assertTrue(all(0 < wait <= RECONNECT_MAX for wait in waits), waits)
        self.assertEqual(max(waits), RECONNECT_MAX)
        self.assertEqual(RECONNECT_MAX, 2.0)
