"""
Tests for L{logio.web}: the streaming subscriber resource, driven through a
real L{Site} over a L{StringTransport}.
"""

from __future__ import annotations

from twisted.internet.abstract import FileDescriptor
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from logio.broker import Broker
from logio.topic import Topic, serverHost
from logio.web import PAUSE_AT, SEND_LIMIT, SubscribeResource, SubscriberSite, widenWrites
from tests.test_publish import TCPTransport

TOPIC = Topic("myapp", "web", "foobar")
TS = "2016-12-06T22:14:21.448"


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """
    Decode a chunked body; return the data and whether the final chunk came.
    """
    data = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            return data, True
        data += rest[:length]
        assert rest[length : length + 2] == b"\r\n", "bad chunk framing"
        body = rest[length + 2 :]
    return data, False


class Client:
    """
    One HTTP connection to the resource over a StringTransport.
    """

    def __init__(
        self, site: Site, request: bytes, transport: StringTransport | None = None
    ) -> None:
        self.transport = transport or StringTransport()
        self.channel = site.buildProtocol(None)
        self.channel.makeConnection(self.transport)
        self.channel.dataReceived(request)

    def response(self) -> tuple[bytes, bytes]:
        """
        The raw head and body written so far.
        """
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        return head, body

    def body(self) -> bytes:
        return dechunk(self.response()[1])[0]


def get(query: str = "", method: bytes = b"GET") -> bytes:
    return method + b" /?" + query.encode() + b" HTTP/1.1\r\nHost: logio\r\n\r\n"


class SubscribeResourceTests(SynchronousTestCase):
    """
    Streaming, errors, flow control and clean-up of subscriptions.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.broker = Broker()
        self.makeSite()

    def makeSite(self, maxLines: int = 10000, maxBytes: int = 4 * 1024 * 1024) -> None:
        resource = SubscribeResource(self.broker, self.clock, maxLines, maxBytes)
        self.site = SubscriberSite(resource, reactor=self.clock)

    def subscribe(self, query: str = "") -> Client:
        return Client(self.site, get(query))

    def test_headersAtOnce(self) -> None:
        """
        The status line and headers are sent before any record matches.
        """
        client = self.subscribe("app=myapp")
        head, body = client.response()
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"Content-Type: text/plain; charset=utf-8", head)
        self.assertIn(b"Transfer-Encoding: chunked", head)
        self.assertEqual(body, b"")
        self.assertEqual(len(self.broker.subscribers), 1)

    def test_socketOptions(self) -> None:
        """
        A subscriber's TCP socket gets TCP_NODELAY (no Nagle delay on each
        line) and keepalive (a dead peer is found).
        """
        transport = TCPTransport()
        Client(self.site, get("app=myapp"), transport)
        self.assertEqual(transport.options, {"keepalive": True, "nodelay": True})

    def test_exactOutput(self) -> None:
        """
        A record is written as one chunk holding C{<ts> <app>[<proc>] <host>: <log>}.
        """
        client = self.subscribe()
        self.broker.publish(TOPIC, [(TS, "2016/12/06 17:14:21 INFO hi")])
        line = f"{TS} myapp[web] foobar: 2016/12/06 17:14:21 INFO hi\n".encode()
        self.assertEqual(client.response()[1], b"%x\r\n%s\r\n" % (len(line), line))

    def test_http10(self) -> None:
        """
        An HTTP/1.0 client gets the lines unframed (no chunked encoding).
        """
        client = Client(self.site, b"GET /?app=myapp HTTP/1.0\r\n\r\n")
        self.broker.publish(TOPIC, [(TS, "one")])
        head, body = client.response()
        self.assertTrue(head.startswith(b"HTTP/1.0 200 OK\r\n"))
        self.assertNotIn(b"chunked", head.lower())
        self.assertEqual(body, f"{TS} myapp[web] foobar: one\n".encode())

    def test_oneWritePerBatch(self) -> None:
        """
        A batch of records reaches a subscriber as a single chunk.
        """
        client = self.subscribe()
        self.broker.publish(TOPIC, [(TS, "one"), (TS, "two"), (TS, "three")])
        body = client.response()[1]
        self.assertEqual(body.count(b"\r\n"), 2)
        self.assertEqual(dechunk(body)[0].count(b"\n"), 3)

    def test_multiLineRecord(self) -> None:
        """
        Each physical line of a multi-line record gets the prefix; no doubled newline.
        """
        client = self.subscribe()
        self.broker.publish(TOPIC, [(TS, "Traceback:\n  File x\nValueError")])
        head = f"{TS} myapp[web] foobar: "
        expected = f"{head}Traceback:\n{head}  File x\n{head}ValueError\n"
        self.assertEqual(client.body(), expected.encode())

    def test_topicFilters(self) -> None:
        """
        Filters are unanchored searches; C{proc=web|worker} takes either.
        """
        client = self.subscribe("app=app&proc=web|worker")
        for proc in ("web", "worker", "clock", "webhook"):
            self.broker.publish(Topic("myapp", proc, "h"), [(TS, proc)])
        self.broker.publish(Topic("other", "web", "h"), [(TS, "other")])
        lines = client.body().decode().splitlines()
        self.assertEqual([line.rsplit(" ", 1)[1] for line in lines], ["web", "worker", "webhook"])

    def test_logFilter(self) -> None:
        """
        C{log=} searches the record's text without its trailing newline.
        """
        client = self.subscribe("log=bar%24")
        self.broker.publish(TOPIC, [(TS, "open bar"), (TS, "bar none"), (TS, "a\nbar")])
        self.assertEqual(
            client.body().decode().splitlines(),
            [
                f"{TS} myapp[web] foobar: open bar",
                f"{TS} myapp[web] foobar: a",
                f"{TS} myapp[web] foobar: bar",
            ],
        )

    def test_firstValueCounts(self) -> None:
        """
        Only the first value of a repeated parameter is used.
        """
        client = self.subscribe("app=zzz&app=myapp")
        self.broker.publish(TOPIC, [(TS, "x")])
        self.assertEqual(client.body(), b"")

    def test_emptyMatchesAll(self) -> None:
        """
        An empty parameter matches every record.
        """
        client = self.subscribe("app=&log=")
        self.broker.publish(TOPIC, [(TS, "x")])
        self.assertEqual(client.body(), f"{TS} myapp[web] foobar: x\n".encode())

    def test_badRegex(self) -> None:
        """
        A pattern that does not compile gives 400 naming the parameter and the error.
        """
        client = self.subscribe("app=ok&proc=(web")
        head, body = client.response()
        self.assertTrue(head.startswith(b"HTTP/1.1 400 "))
        self.assertIn(b"'proc'", body)
        self.assertIn(b"missing )", body)
        self.assertEqual(self.broker.subscribers, ())

    def test_head(self) -> None:
        """
        HEAD returns the streaming headers and no body, and subscribes nothing.
        """
        client = Client(self.site, get("app=x", b"HEAD"))
        head, body = client.response()
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"Content-Type: text/plain; charset=utf-8", head)
        self.assertEqual(body, b"")
        self.assertEqual(self.broker.subscribers, ())

    def test_headBadRegex(self) -> None:
        """
        HEAD with a bad pattern is a 400 too.
        """
        client = Client(self.site, get("log=[", b"HEAD"))
        self.assertTrue(client.response()[0].startswith(b"HTTP/1.1 400 "))

    def test_otherMethods(self) -> None:
        """
        Methods other than GET and HEAD get 405.
        """
        for method in (b"POST", b"PUT", b"DELETE"):
            client = Client(self.site, get("", method))
            self.assertTrue(client.response()[0].startswith(b"HTTP/1.1 405 "), method)
        self.assertEqual(self.broker.subscribers, ())

    def test_disconnectUnsubscribes(self) -> None:
        """
        A client that goes away is removed from the broker at once.
        """
        client = self.subscribe()
        other = self.subscribe()
        self.assertEqual(len(self.broker.subscribers), 2)
        client.channel.connectionLost(Exception("gone"))
        self.assertEqual(len(self.broker.subscribers), 1)
        other.channel.connectionLost(Exception("gone"))
        self.assertEqual(self.broker.subscribers, ())
        self.broker.publish(TOPIC, [(TS, "nobody listens")])

    def test_abortDropsTheConnection(self) -> None:
        """
        Aborting a subscription drops its queue and its connection at once;
        the connection's loss then unsubscribes it.
        """
        client = self.subscribe()
        client.transport.producer.pauseProducing()
        self.broker.publish(TOPIC, [(TS, "queued")])
        [subscription] = self.broker.subscribers
        subscription.abort()
        self.assertEqual(subscription.queued, (0, 0))
        self.assertTrue(client.transport.disconnected)
        client.channel.connectionLost(Exception("aborted"))
        self.assertEqual(self.broker.subscribers, ())
        self.assertEqual(client.body(), b"")

    def test_abortAfterConnectionLost(self) -> None:
        """
        Aborting a subscription whose connection is already gone does nothing.
        """
        client = self.subscribe()
        [subscription] = self.broker.subscribers
        client.channel.connectionLost(Exception("gone"))
        subscription.abort()
        self.assertEqual(self.broker.subscribers, ())

    def test_chattySubscriberStillRead(self) -> None:
        """
        Bytes a subscriber sends after its request are thrown away and the
        socket keeps being read, so its going away is noticed.
        """
        client = Client(self.site, get("app=myapp") + b"x" * 40000)
        client.channel.dataReceived(b"GET /more HTTP/1.1\r\n\r\n" + b"y" * 40000)
        self.assertEqual(client.transport.producerState, "producing")
        self.broker.publish(TOPIC, [(TS, "still here")])
        self.assertEqual(client.body(), f"{TS} myapp[web] foobar: still here\n".encode())
        client.channel.connectionLost(Exception("gone"))
        self.assertEqual(self.broker.subscribers, ())

    def test_pausedQueueDropsOldestAndSaysSo(self) -> None:
        """
        While paused, at most C{maxLines} lines queue; on resume the client
        first gets a notice with the exact number dropped, then the newest lines.
        """
        self.makeSite(maxLines=3)
        client = self.subscribe()
        client.transport.producer.pauseProducing()
        self.broker.publish(TOPIC, [(TS, f"line {i}") for i in range(4)])
        self.broker.publish(TOPIC, [(TS, "line 4")])
        self.assertEqual(client.body(), b"")
        [subscription] = self.broker.subscribers
        self.assertEqual(subscription.queued[0], 3)
        self.clock.advance(5)
        client.transport.producer.resumeProducing()
        lines = client.body().decode().splitlines()
        self.assertEqual(
            lines[0],
            f"1970-01-01T00:00:05.000 logio[logio] {serverHost()}: 2 lines dropped: "
            "this subscriber is reading too slowly",
        )
        self.assertEqual(
            [line.rsplit(": ", 1)[1] for line in lines[1:]], ["line 2", "line 3", "line 4"]
        )
        self.assertEqual(subscription.droppedTotal, 2)
        self.assertEqual(subscription.queued, (0, 0))

    def test_smallBatchesQueueTogether(self) -> None:
        """
        Small batches queued while paused are sent as one chunk on resume;
        a multi-line record's batch is kept apart, so it can be dropped whole.
        """
        client = self.subscribe()
        client.transport.producer.pauseProducing()
        for i in range(5):
            self.broker.publish(TOPIC, [(TS, f"line {i}")])
        self.broker.publish(TOPIC, [(TS, "a1\na2")])
        self.broker.publish(TOPIC, [(TS, "line 5")])
        client.transport.producer.resumeProducing()
        prefix = f"{TS} myapp[web] foobar: "
        ones = "".join(f"{prefix}line {i}\n" for i in range(5)).encode()
        multi = f"{prefix}a1\n{prefix}a2\n".encode()
        last = f"{prefix}line 5\n".encode()
        self.assertEqual(
            client.response()[1],
            b"".join(b"%x\r\n%b\r\n" % (len(chunk), chunk) for chunk in (ones, multi, last)),
        )

    def test_byteBound(self) -> None:
        """
        The queue is bounded in bytes as well as lines.
        """
        line = f"{TS} myapp[web] foobar: " + "x" * 70 + "\n"
        self.makeSite(maxBytes=len(line) * 2 + 10)
        client = self.subscribe()
        client.transport.producer.pauseProducing()
        self.broker.publish(TOPIC, [(TS, "x" * 70)] * 5)
        [subscription] = self.broker.subscribers
        self.assertEqual(subscription.queued, (2, len(line) * 2))
        client.transport.producer.resumeProducing()
        lines = client.body().decode().splitlines(keepends=True)
        self.assertIn(": 3 lines dropped:", lines[0])
        self.assertEqual(lines[1:], [line, line])

    def socketClient(self) -> tuple[Client, FileDescriptor]:
        """
        A client whose transport has a socket underneath.
        """
        socket = FileDescriptor()
        transport = StringTransport()
        transport.transport = socket  # type: ignore[attr-defined]
        return Client(self.site, get(), transport), socket

    def test_byteBoundCoversTheSocket(self) -> None:
        """
        Over a socket, the byte bound covers what the transport holds too: the
        transport pauses the subscription at part of the bound, and the queue
        gets the rest.  A small bound is split in halves.
        """
        line = f"{TS} myapp[web] foobar: " + "x" * 70 + "\n"
        self.makeSite(maxBytes=len(line) * 4)
        client, socket = self.socketClient()
        self.assertEqual(socket.bufferSize, len(line) * 2)
        client.transport.producer.pauseProducing()
        self.broker.publish(TOPIC, [(TS, "x" * 70)] * 5)
        [subscription] = self.broker.subscribers
        self.assertEqual(subscription.queued, (2, len(line) * 2))

    def test_pauseThresholds(self) -> None:
        """
        The transport pauses a subscription at a quarter of the byte bound up
        to L{PAUSE_AT}, and never below half of it up to 256 KiB.
        """
        for maxBytes, pauseAt in [
            (64 * 1024 * 1024, PAUSE_AT),
            (4 * 1024 * 1024, 1024 * 1024),
            (2 * 1024 * 1024, 512 * 1024),
            (1024 * 1024, 256 * 1024),
            (256 * 1024, 128 * 1024),
            (1000, 500),
        ]:
            self.makeSite(maxBytes=maxBytes)
            self.assertEqual(self.socketClient()[1].bufferSize, pauseAt, maxBytes)

    def test_multiLineRecordDroppedWhole(self) -> None:
        """
        A queued multi-line record is dropped whole, never cut in the middle.
        """
        self.makeSite(maxLines=3)
        client = self.subscribe()
        client.transport.producer.pauseProducing()
        self.broker.publish(TOPIC, [(TS, "a1\na2\na3"), (TS, "b")])
        client.transport.producer.resumeProducing()
        lines = client.body().decode().splitlines()
        self.assertIn(": 3 lines dropped:", lines[0])
        self.assertEqual(lines[1:], [f"{TS} myapp[web] foobar: b"])

    def test_slowSubscriberDoesNotAffectOthers(self) -> None:
        """
        A paused subscriber queues while another keeps receiving everything.
        """
        self.makeSite(maxLines=2)
        slow = self.subscribe()
        fast = self.subscribe()
        slow.transport.producer.pauseProducing()
        for i in range(10):
            self.broker.publish(TOPIC, [(TS, str(i))])
        self.assertEqual(len(fast.body().splitlines()), 10)
        self.assertEqual(slow.body(), b"")

    def test_stopEndsResponses(self) -> None:
        """
        Stopping the broker sends what each subscriber has queued, then the
        final chunk, to every subscriber.
        """
        clients = [self.subscribe() for _ in range(4)]
        for client in clients:
            client.transport.producer.pauseProducing()
        self.broker.publish(TOPIC, [(TS, "queued")])
        self.broker.startService()
        stopped = self.broker.stopService()
        for client in clients:
            data, ended = dechunk(client.response()[1])
            self.assertEqual(data, f"{TS} myapp[web] foobar: queued\n".encode())
            self.assertTrue(ended)
            self.assertTrue(client.transport.disconnecting)
        self.assertEqual(self.broker.subscribers, ())
        self.clock.advance(10)
        self.successResultOf(stopped)


class WidenWritesTests(SynchronousTestCase):
    """
    Subscriber sockets send more per pass and pause later than Twisted's defaults.
    """

    def test_socket(self) -> None:
        """
        A socket transport gets L{SEND_LIMIT} and L{PAUSE_AT}.
        """
        transport = FileDescriptor()
        widenWrites(transport)
        self.assertEqual((transport.SEND_LIMIT, transport.bufferSize), (SEND_LIMIT, PAUSE_AT))
        self.assertGreater(SEND_LIMIT, FileDescriptor.SEND_LIMIT)
        self.assertGreater(PAUSE_AT, FileDescriptor.bufferSize)

    def test_wrapped(self) -> None:
        """
        Under a wrapper (TLS), the socket transport underneath is changed.
        """
        transport = FileDescriptor()
        wrapper = StringTransport()
        wrapper.transport = transport  # type: ignore[attr-defined]
        widenWrites(wrapper)
        self.assertEqual(transport.SEND_LIMIT, SEND_LIMIT)

    def test_notASocket(self) -> None:
        """
        A transport with no socket underneath is left alone.
        """
        transport = StringTransport()
        widenWrites(transport)
        self.assertFalse(hasattr(transport, "SEND_LIMIT"))
