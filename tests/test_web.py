"""
Tests for L{logio.web.site}: the streaming subscriber resource, driven through a
real L{Site} over a L{StringTransport}.
"""

from __future__ import annotations

import gc
import json
import re
import weakref
from io import BytesIO
from typing import Any, Iterable

from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from logio import formats
from logio.broker import Broker
from logio.formats import pack
from logio.net import PAUSE_AT
from logio.settings import Settings
from logio.topic import Topic, serverHost
from logio.web.channel import REQUEST_DEADLINE, UNREAD_DEADLINE
from logio.web.stream import CLOSE_TIMEOUT, SLACK, SMALL, Stream
from tests.support.fakes import TCPTransport, makeTestSite, publish
from tests.support.http import Client, dechunk, get, sseEvents
from tests.support.metrics import parseMetrics

TOPIC = Topic("myapp", "web", "foobar")
TS = "2016-12-06T22:14:21.448"
#: TS as a POSIX timestamp.
NOW = 1481062461.448
START = 1700000000000


class PausingTransport(StringTransport):
    """
    A transport whose buffer fills at once: it pauses its producer after
    every write with data (the response's headers included), as a socket
    that is not read does.
    """

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and data:
            self.producer.pauseProducing()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def resumeProducing(self) -> None:
        # A socket transport ignores this once it is closing.
        if not self.disconnecting:
            super().resumeProducing()


class ResourceTestCase(SynchronousTestCase):
    """
    A subscriber port's site over a fake clock, and clients for it.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.broker = Broker(Settings(), start=START)
        self.makeSite()

    def makeSite(self, **settings: int) -> None:
        self.site = makeTestSite(self.broker, self.clock, Settings(**settings))  # type: ignore[arg-type]

    def subscribe(self, query: str = "") -> Client:
        return Client(self.site, get(query))

    def socketClient(self) -> tuple[Client, FileDescriptor]:
        """
        A client whose transport has a socket underneath.
        """
        socket = FileDescriptor()
        transport = StringTransport()
        transport.transport = socket  # type: ignore[attr-defined]
        return Client(self.site, get(), transport), socket


class SubscribeResourceTests(ResourceTestCase):
    """
    Streaming, errors, flow control and clean-up of subscriptions.
    """

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
        publish(self.broker, TOPIC, [(TS, "2016/12/06 17:14:21 INFO hi", None)])
        line = f"{TS} myapp[web] foobar: 2016/12/06 17:14:21 INFO hi\n".encode()
        self.assertEqual(client.response()[1], b"%x\r\n%s\r\n" % (len(line), line))

    def test_http10(self) -> None:
        """
        An HTTP/1.0 client gets the lines unframed (no chunked encoding).
        """
        client = Client(self.site, b"GET /?app=myapp HTTP/1.0\r\n\r\n")
        publish(self.broker, TOPIC, [(TS, "one", None)])
        head, body = client.response()
        self.assertTrue(head.startswith(b"HTTP/1.0 200 OK\r\n"))
        self.assertNotIn(b"chunked", head.lower())
        self.assertEqual(body, f"{TS} myapp[web] foobar: one\n".encode())

    def test_oneWritePerBatch(self) -> None:
        """
        A batch of records reaches a subscriber as a single chunk.
        """
        client = self.subscribe()
        publish(self.broker, TOPIC, [(TS, "one", None), (TS, "two", None), (TS, "three", None)])
        body = client.response()[1]
        self.assertEqual(body.count(b"\r\n"), 2)
        self.assertEqual(dechunk(body)[0].count(b"\n"), 3)

    def test_multiLineRecord(self) -> None:
        """
        Each physical line of a multi-line record gets the prefix; no doubled newline.
        """
        client = self.subscribe()
        publish(self.broker, TOPIC, [(TS, "Traceback:\n  File x\nValueError", None)])
        head = f"{TS} myapp[web] foobar: "
        expected = f"{head}Traceback:\n{head}  File x\n{head}ValueError\n"
        self.assertEqual(client.body(), expected.encode())

    def test_topicFilters(self) -> None:
        """
        Filters are unanchored searches; C{proc=web|worker} takes either.
        """
        client = self.subscribe("app=app&proc=web|worker")
        for proc in ("web", "worker", "clock", "webhook"):
            publish(self.broker, Topic("myapp", proc, "h"), [(TS, proc, None)])
        publish(self.broker, Topic("other", "web", "h"), [(TS, "other", None)])
        lines = client.body().decode().splitlines()
        self.assertEqual([line.rsplit(" ", 1)[1] for line in lines], ["web", "worker", "webhook"])

    def test_logFilter(self) -> None:
        """
        C{log=} searches the record's text without its trailing newline.
        """
        client = self.subscribe("log=bar%24")
        publish(
            self.broker,
            TOPIC,
            [(TS, "open bar", None), (TS, "bar none", None), (TS, "a\nbar", None)],
        )
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
        publish(self.broker, TOPIC, [(TS, "x", None)])
        self.assertEqual(client.body(), b"")

    def test_emptyMatchesAll(self) -> None:
        """
        An empty parameter matches every record.
        """
        client = self.subscribe("app=&log=")
        publish(self.broker, TOPIC, [(TS, "x", None)])
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
        publish(self.broker, TOPIC, [(TS, "nobody listens", None)])

    def test_abortDropsTheConnection(self) -> None:
        """
        Aborting a subscription drops its queue and its connection at once;
        the connection's loss then unsubscribes it.
        """
        client = self.subscribe()
        client.transport.producer.pauseProducing()
        publish(self.broker, TOPIC, [(TS, "queued", None)])
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
        publish(self.broker, TOPIC, [(TS, "still here", None)])
        self.assertEqual(client.body(), f"{TS} myapp[web] foobar: still here\n".encode())
        client.channel.connectionLost(Exception("gone"))
        self.assertEqual(self.broker.subscribers, ())

    def test_pausedQueueDropsOldestAndSaysSo(self) -> None:
        """
        While paused, at most C{maxLines} lines queue; on resume the client
        first gets a notice with the exact number dropped, then the newest lines.
        """
        self.makeSite(buffer=3)
        client = self.subscribe()
        client.transport.producer.pauseProducing()
        publish(self.broker, TOPIC, [(TS, f"line {i}", None) for i in range(4)])
        publish(self.broker, TOPIC, [(TS, "line 4", None)])
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
            publish(self.broker, TOPIC, [(TS, f"line {i}", None)])
        publish(self.broker, TOPIC, [(TS, "a1\na2", None)])
        publish(self.broker, TOPIC, [(TS, "line 5", None)])
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
        self.makeSite(bufferBytes=len(line) * 2 + 10)
        client = self.subscribe()
        client.transport.producer.pauseProducing()
        publish(self.broker, TOPIC, [(TS, "x" * 70, None)] * 5)
        [subscription] = self.broker.subscribers
        self.assertEqual(subscription.queued, (2, len(line) * 2))
        client.transport.producer.resumeProducing()
        lines = client.body().decode().splitlines(keepends=True)
        self.assertIn(": 3 lines dropped:", lines[0])
        self.assertEqual(lines[1:], [line, line])

    def test_byteBoundCoversTheSocket(self) -> None:
        """
        Over a socket, the byte bound covers what the transport holds too: the
        transport pauses the subscription at part of the bound (a small
        bound is split in halves), and the queue gets what the transport
        does not hold.
        """
        line = f"{TS} myapp[web] foobar: " + "x" * 70 + "\n"
        self.makeSite(bufferBytes=len(line) * 4)
        client, socket = self.socketClient()
        self.assertEqual(socket.bufferSize, len(line) * 2)
        socket.dataBuffer = b"y" * (len(line) * 3 - 10)
        socket.offset = len(line) - 10
        client.transport.producer.pauseProducing()
        publish(self.broker, TOPIC, [(TS, "x" * 70, None)] * 5)
        [subscription] = self.broker.subscribers
        self.assertEqual(subscription.queued, (2, len(line) * 2))

    def test_outputOverTheBoundCut(self) -> None:
        """
        A batch whose output alone is larger than the byte bound is never
        written whole: the newest records that fit are written, after a
        notice counting the rest as dropped.
        """
        self.makeSite(bufferBytes=200 * 1024)
        client, socket = self.socketClient()
        publish(self.broker, TOPIC, [(TS, f"{i:05d} " + "x" * 100, None) for i in range(5000)])
        lines = client.body().decode().splitlines()
        written = len(client.response()[1])
        self.assertLessEqual(written, 200 * 1024 + SLACK + 100)
        self.assertGreater(written, 200 * 1024)
        notice = re.search(r": (\d+) lines dropped:", lines[0])
        assert notice is not None
        dropped = int(notice.group(1))
        self.assertEqual(dropped + len(lines) - 1, 5000)
        self.assertEqual(
            [line.split(": ", 1)[1][:5] for line in lines[1:]],
            [f"{i:05d}" for i in range(dropped, 5000)],
        )
        self.assertEqual(self.broker.stats.linesDropped, {"text": dropped})

    def test_outputBoundedBeforeEncoded(self) -> None:
        """
        Of a batch no subscriber could keep whole, only the newest records
        that would fill the most-available subscriber's room (at the least
        a record's output can be, empty) are encoded, one more at most; every
        subscriber gets what it would have kept of the whole batch, after
        a notice counting the rest, stalled ones on resume.
        """
        encoded: list[int] = []

        def counting(lines: Any, *args: Any) -> Any:
            encoded.append(len(lines))
            return pack(lines, *args)

        self.patch(formats, "pack", counting)
        self.makeSite(bufferBytes=200 * 1024)
        stalled = [self.subscribe() for _ in range(2)]
        for client in stalled:
            client.transport.producer.pauseProducing()
        client, socket = self.socketClient()
        count = 20000
        publish(self.broker, TOPIC, [(TS, f"{i:05d} " + "x" * 100, None) for i in range(count)])
        least = len(" myapp[web] foobar: \n")
        # (One record more: the empty one that measures the least.)
        self.assertLessEqual(sum(encoded), (200 * 1024 + SLACK) // least + 2)
        for reader in stalled:
            reader.transport.producer.resumeProducing()
        for reader in [client, *stalled]:
            lines = reader.body().decode().splitlines()
            notice = re.search(r": (\d+) lines dropped:", lines[0])
            assert notice is not None
            dropped = int(notice.group(1))
            self.assertEqual(dropped + len(lines) - 1, count)
            self.assertEqual(
                [line.split(": ", 1)[1][:5] for line in lines[1:]],
                [f"{i:05d}" for i in range(dropped, count)],
            )
        self.assertEqual(self.broker.stats.linesOut["text"], count * 3)

    def test_recordOverTheBoundDroppedWhole(self) -> None:
        """
        One multi-line record whose output is larger than the bound is
        dropped whole and counted, and the next record is delivered.
        """
        self.makeSite(bufferBytes=100 * 1024)
        client, socket = self.socketClient()
        publish(self.broker, TOPIC, [(TS, "\n" * 20000, None)])
        publish(self.broker, TOPIC, [(TS, "after", None)])
        self.assertEqual(
            client.body().decode().splitlines(),
            [
                f"1970-01-01T00:00:00.000 logio[logio] {serverHost()}: 20001 lines dropped: "
                "this subscriber is reading too slowly",
                f"{TS} myapp[web] foobar: after",
            ],
        )

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
            self.makeSite(bufferBytes=maxBytes)
            self.assertEqual(self.socketClient()[1].bufferSize, pauseAt, maxBytes)

    def test_multiLineRecordDroppedWhole(self) -> None:
        """
        A queued multi-line record is dropped whole, never cut in the middle.
        """
        self.makeSite(buffer=3)
        client = self.subscribe()
        client.transport.producer.pauseProducing()
        publish(self.broker, TOPIC, [(TS, "a1\na2\na3", None), (TS, "b", None)])
        client.transport.producer.resumeProducing()
        lines = client.body().decode().splitlines()
        self.assertIn(": 3 lines dropped:", lines[0])
        self.assertEqual(lines[1:], [f"{TS} myapp[web] foobar: b"])

    def test_slowSubscriberDoesNotAffectOthers(self) -> None:
        """
        A paused subscriber queues while another keeps receiving everything.
        """
        self.makeSite(buffer=2)
        slow = self.subscribe()
        fast = self.subscribe()
        slow.transport.producer.pauseProducing()
        for i in range(10):
            publish(self.broker, TOPIC, [(TS, str(i), None)])
        self.assertEqual(len(fast.body().splitlines()), 10)
        self.assertEqual(slow.body(), b"")

    def test_stopEndsResponses(self) -> None:
        """
        Stopping the broker sends what each subscriber has queued, then a
        notice that the server is shutting down in the subscriber's format,
        then the final chunk, to every subscriber.
        """
        clients = [self.subscribe(f"format={format}") for format in ("text", "json", "sse")]
        clients.append(self.subscribe())
        for client in clients:
            client.transport.producer.pauseProducing()
        publish(self.broker, TOPIC, [(TS, "queued", None)])
        self.clock.advance(1700000000.25)
        self.broker.startService()
        stopped = self.broker.stopService()
        now = "2023-11-14T22:13:20.250"
        host = serverHost()
        text, json_, sse, plain = (dechunk(client.response()[1]) for client in clients)
        self.assertEqual(
            text[0],
            f"{TS} myapp[web] foobar: queued\n"
            f"{now} logio[logio] {host}: the server is shutting down\n".encode(),
        )
        self.assertEqual(plain, text)
        objects = [json.loads(line) for line in json_[0].splitlines()]
        self.assertEqual(objects[0]["log"], "queued")
        self.assertEqual(objects[1], {"time": now + "Z", "notice": "the server is shutting down"})
        events = sseEvents(sse[0])
        self.assertEqual(json.loads(events[0]["data"])["log"], "queued")
        self.assertEqual(events[1]["event"], "notice")
        self.assertEqual(json.loads(events[1]["data"])["notice"], "the server is shutting down")
        for client in clients:
            self.assertTrue(dechunk(client.response()[1])[1])
            self.assertTrue(client.transport.disconnecting)
        self.assertEqual(self.broker.subscribers, ())
        self.clock.advance(10)
        self.successResultOf(stopped)


class StopTests(ResourceTestCase):
    """
    What a stopping server sends, and what it says it could not.
    """

    def test_wholeQueueSent(self) -> None:
        """
        Stopping sends a paused subscriber all of its queue, behind its drop
        notice and ahead of the final chunk, even though its transport is full.
        """
        self.makeSite(buffer=3)
        transport = PausingTransport()
        client = Client(self.site, get(), transport)
        for i in range(5):
            # Records too big to be merged in the queue: one segment each.
            publish(self.broker, TOPIC, [(TS, "x" * SMALL + f" {i}", None)])
        self.broker.startService()
        self.broker.stopService()
        data, ended = dechunk(client.response()[1])
        lines = data.decode().splitlines()
        self.assertIn(": 2 lines dropped:", lines[0])
        self.assertEqual([line.rsplit(" ", 1)[1] for line in lines[1:-1]], ["2", "3", "4"])
        self.assertTrue(lines[-1].endswith(": the server is shutting down"))
        self.assertTrue(ended)

    def test_undeliveredCounted(self) -> None:
        """
        Lines a subscriber's socket still holds when the server stops
        waiting are counted, and the log says how many.
        """
        client, socket = self.socketClient()
        client.transport.producer.pauseProducing()
        publish(self.broker, TOPIC, [(TS, "x" * 70, None)] * 4)
        line = len(f"{TS} myapp[web] foobar: " + "x" * 70 + "\n")
        # The socket will still hold the last two lines.
        socket.dataBuffer = b"z" * (line * 2)
        socket.disconnected = False
        self.broker.startService()
        with capturedLogs() as events:
            stopped = self.broker.stopService()
            self.clock.advance(CLOSE_TIMEOUT + 1)
        self.successResultOf(stopped)
        [event] = [e for e in events if "could not be delivered" in e["log_format"]]
        self.assertEqual((event["lines"], event["bytes"], event["subscribers"]), (2, 0, 1))


class QueryTests(ResourceTestCase):
    """
    What a subscription request may ask for, and the 400s for what it may not.
    """

    def test_unknownParameter(self) -> None:
        """
        A misspelt parameter is a 400 naming it and the known ones, never
        an unfiltered stream.
        """
        for query, named in [("ap=myapp", "'ap'"), ("APP=x&zz=1", "'APP', 'zz'")]:
            head, body = self.subscribe(query).response()
            self.assertTrue(head.startswith(b"HTTP/1.1 400 "), query)
            self.assertIn(named.encode(), body)
            self.assertIn(
                b"app proc host log level since until tail follow format ansi last_event_id", body
            )
        self.assertEqual(self.broker.subscribers, ())
        self.assertEqual(self.broker.stats.refusals, {"subscriber": 2})

    def test_badValues(self) -> None:
        """
        A C{tail}, C{follow}, C{format} or event id that means nothing is a 400 saying why.
        """
        for query, reason in [
            ("tail=-1", b"tail must be a number"),
            ("tail=ten", b"tail must be a number"),
            ("follow=maybe", b"follow must be 1 or 0"),
            ("format=xml", b"unknown format 'xml'"),
            ("last_event_id=42", b"not a logio event id"),
        ]:
            head, body = self.subscribe(query).response()
            self.assertTrue(head.startswith(b"HTTP/1.1 400 "), query)
            self.assertIn(reason, body, query)
        self.assertEqual(self.broker.subscribers, ())

    def test_costlyPatternRefused(self) -> None:
        """
        A C{log} pattern found too costly at run time is refused with a 400.
        """
        self.broker.costlyPatterns["[ab]*a[ab]{90}c"] = None
        head, body = self.subscribe("log=%5Bab%5D*a%5Bab%5D%7B90%7Dc").response()
        self.assertTrue(head.startswith(b"HTTP/1.1 400 "))
        self.assertIn(b"too costly to match on the records published here", body)

    def test_anyOtherPathSubscribes(self) -> None:
        """
        Every path but the reserved ones subscribes, as the original did.
        """
        client = Client(self.site, b"GET /some/path?app=myapp HTTP/1.1\r\nHost: localhost\r\n\r\n")
        publish(self.broker, TOPIC, [(TS, "x", None)])
        self.assertEqual(client.body(), f"{TS} myapp[web] foobar: x\n".encode())

    def test_json(self) -> None:
        """
        C{?format=json} or C{Accept: application/x-ndjson} streams JSON lines.
        """
        clients = [
            self.subscribe("format=json"),
            Client(self.site, b"GET / HTTP/1.1\r\nAccept: application/x-ndjson\r\n\r\n"),
        ]
        publish(self.broker, TOPIC, [(TS, "one\ntwo", None)])
        for client in clients:
            self.assertIn(b"Content-Type: application/x-ndjson", client.response()[0])
            [line] = client.body().splitlines()
            self.assertEqual(json.loads(line)["log"], "one\ntwo")
        self.assertEqual(self.broker.stats.linesOut, {"json": 2})

    def test_jsonDropNotice(self) -> None:
        """
        In JSON, the drop notice is an object with the count.
        """
        self.makeSite(buffer=2)
        client = self.subscribe("format=json")
        client.transport.producer.pauseProducing()
        publish(self.broker, TOPIC, [(TS, str(i), None) for i in range(5)])
        client.transport.producer.resumeProducing()
        notice, *records = [json.loads(line) for line in client.body().splitlines()]
        self.assertEqual(notice["dropped"], 3)
        self.assertIn("3 lines dropped", notice["notice"])
        self.assertEqual([r["log"] for r in records], ["3", "4"])
        self.assertEqual(self.broker.stats.linesDropped, {"json": 3})

    def test_sse(self) -> None:
        """
        C{?format=sse} or C{Accept: text/event-stream} streams events with ids.
        """
        clients = [
            self.subscribe("format=sse"),
            Client(self.site, b"GET / HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n"),
        ]
        publish(self.broker, TOPIC, [(TS, "a", None), (TS, "b", None)])
        for client in clients:
            head = client.response()[0]
            self.assertIn(b"Content-Type: text/event-stream", head)
            self.assertIn(b"X-Accel-Buffering: no", head)
            events = sseEvents(client.body())
            self.assertEqual([e["id"] for e in events], [f"{START}-1", f"{START}-2"])

    def test_sseQueueDropsWholeEvents(self) -> None:
        """
        A slow SSE subscriber's queue drops whole events and then says so
        in an C{event: dropped}.
        """
        self.makeSite(buffer=2)
        client = self.subscribe("format=sse")
        client.transport.producer.pauseProducing()
        publish(self.broker, TOPIC, [(TS, str(i), None) for i in range(3)])
        publish(self.broker, TOPIC, [(TS, "3", None)])
        client.transport.producer.resumeProducing()
        dropped, *events = sseEvents(client.body())
        self.assertEqual(dropped["event"], "dropped")
        self.assertEqual(json.loads(dropped["data"])["dropped"], 2)
        self.assertEqual([e["id"] for e in events], [f"{START}-3", f"{START}-4"])

    def test_keepAlive(self) -> None:
        """
        An SSE stream silent for 15 s gets a comment; a busy one does not,
        nor does a text stream.
        """
        quiet = self.subscribe("format=sse&app=quiet")
        busy = self.subscribe("format=sse&app=busy")
        text = self.subscribe()
        for _ in range(20):
            self.clock.advance(1)
            publish(self.broker, Topic("busy", "p", "h"), [(TS, "x", None)])
        self.assertEqual(quiet.body().count(b": keep-alive\n\n"), 1)
        self.assertNotIn(b"keep-alive", busy.body())
        self.assertNotIn(b"keep-alive", text.body())
        for _ in range(20):
            self.clock.advance(1)
        self.assertEqual(busy.body().count(b": keep-alive\n\n"), 1)
        for client in (quiet, busy, text):
            client.channel.connectionLost(Exception("gone"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_tailThenLive(self) -> None:
        """
        C{tail=N} replays the newest N matching records from history, then
        streams live with no gap and no duplicate.
        """
        publish(self.broker, TOPIC, [(TS, f"old {i}", None) for i in range(5)])
        publish(self.broker, Topic("other", "p", "h"), [(TS, "not mine", None)])
        client = self.subscribe("app=myapp&tail=3&format=json")
        publish(self.broker, TOPIC, [(TS, "live", None)])
        records = [json.loads(line) for line in client.body().splitlines()]
        self.assertEqual([r["log"] for r in records], ["old 2", "old 3", "old 4", "live"])
        self.assertEqual([r["seq"] for r in records], [3, 4, 5, 7])

    def test_tailWithLogFilter(self) -> None:
        """
        The replay applies the C{log} filter too.
        """
        publish(
            self.broker,
            TOPIC,
            [
                (TS, "ERROR 1", None),
                (TS, "INFO 2", None),
                (TS, "ERROR 3", None),
                (TS, "INFO 4", None),
            ],
        )
        client = self.subscribe("log=ERROR&tail=10")
        self.assertEqual(
            client.body().decode().splitlines(),
            [f"{TS} myapp[web] foobar: ERROR 1", f"{TS} myapp[web] foobar: ERROR 3"],
        )

    def test_noFollow(self) -> None:
        """
        C{follow=0} returns the replay and ends the response with the final
        chunk; it never subscribes.
        """
        publish(self.broker, TOPIC, [(TS, "a", None), (TS, "b", None)])
        client = self.subscribe("tail=10&follow=0")
        data, ended = dechunk(client.response()[1])
        self.assertEqual(data, f"{TS} myapp[web] foobar: a\n{TS} myapp[web] foobar: b\n".encode())
        self.assertTrue(ended)
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(self.broker.subscribers, ())

    def test_noFollowWaitsForSlowClient(self) -> None:
        """
        A replay that fills the transport goes through the queue, and the
        response ends only once all of it has been sent.
        """
        for i in range(4):
            publish(self.broker, Topic("myapp", str(i % 2), "h"), [(TS, str(i), None)])
        transport = PausingTransport()
        client = Client(self.site, get("tail=4&follow=0"), transport)
        self.assertEqual(dechunk(client.response()[1]), (b"", False))
        for _ in range(4):
            if not transport.disconnecting:
                transport.producer.resumeProducing()
        data, ended = dechunk(client.response()[1])
        self.assertEqual(
            [line.rsplit(" ", 1)[1] for line in data.decode().splitlines()], list("0123")
        )
        self.assertTrue(ended)

    def test_replayBoundedByQueue(self) -> None:
        """
        A replay larger than the subscriber's queue is not written whole:
        what the paused transport cannot take queues within the bounds, the
        oldest of it dropped and counted like live lines.
        """
        self.makeSite(buffer=300)
        publish(self.broker, TOPIC, [(TS, str(i), None) for i in range(1000)])
        transport = PausingTransport()
        client = Client(self.site, get("tail=1000&follow=0"), transport)
        for _ in range(10):
            if not transport.disconnecting:
                transport.producer.resumeProducing()
        data, ended = dechunk(client.response()[1])
        lines = data.decode().splitlines()
        self.assertTrue(ended)
        self.assertIn(": 700 lines dropped:", lines[0])
        self.assertEqual(
            [line.rsplit(" ", 1)[1] for line in lines[1:]], [str(i) for i in range(700, 1000)]
        )

    def test_timeRange(self) -> None:
        """
        C{since} and C{until} (RFC 3339, or a span before now) replay the
        records whose time is in the range, with the other filters and
        C{tail}; without C{follow=0} the stream goes on live, unless the
        range is over: then it ends.
        """
        self.clock.advance(NOW - self.clock.seconds())
        stamps = [f"2016-12-06T22:{minute:02d}:00.000" for minute in range(0, 15)]
        publish(self.broker, TOPIC, [(stamp, stamp[11:16], None) for stamp in stamps])

        def logs(client: Client) -> list[str]:
            return [json.loads(line)["log"] for line in client.body().splitlines()]

        ranged = self.subscribe("format=json&follow=0&since=2016-12-06T22:10:00Z")
        self.assertEqual(logs(ranged), ["22:10", "22:11", "22:12", "22:13", "22:14"])
        self.assertTrue(dechunk(ranged.response()[1])[1])
        between = self.subscribe("format=json&since=10m&until=2016-12-06T23:07:30%2B01:00")
        self.assertEqual(logs(between), ["22:05", "22:06", "22:07"])
        self.assertTrue(dechunk(between.response()[1])[1], "a range that is over ends")
        last = self.subscribe("format=json&follow=0&since=2016-12-06T22:10:00Z&tail=2")
        self.assertEqual(logs(last), ["22:13", "22:14"])
        live = self.subscribe("format=json&since=2m")
        publish(self.broker, TOPIC, [(stamps[-1], "live", None)])
        self.assertEqual(logs(live), ["22:13", "22:14", "live"])
        self.assertFalse(dechunk(live.response()[1])[1])

    def test_untilInTheFuture(self) -> None:
        """
        A range whose end is still to come streams live until the clock
        passes it, then ends.
        """
        self.clock.advance(NOW - self.clock.seconds())
        client = self.subscribe("format=json&since=1m&until=2016-12-06T22:15:21.448Z")
        publish(self.broker, TOPIC, [(TS, "live", None)])
        self.clock.advance(59)
        self.assertFalse(dechunk(client.response()[1])[1])
        self.clock.advance(2)
        publish(self.broker, TOPIC, [(TS, "after the end", None)])
        body, ended = dechunk(client.response()[1])
        self.assertTrue(ended)
        self.assertEqual([json.loads(line)["log"] for line in body.splitlines()], ["live"])

    def test_badTimeRange(self) -> None:
        """
        A malformed C{since} or C{until}, or an C{until} before C{since}, is
        a 400 that says which.
        """
        for query, message in (
            ("since=yesterday", b"since must be an RFC 3339 time"),
            ("until=5", b"until must be an RFC 3339 time"),
            ("since=1m&until=1h", b"is before since"),
        ):
            head, body = self.subscribe(query).response()
            self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
            self.assertIn(message, body)

    def test_levelFilter(self) -> None:
        """
        C{level=} keeps records of that level and worse, live and in
        replay, alone or with a C{log} pattern; a record without a level
        is not kept.
        """
        records = [
            (TS, "ERROR disk full", None),
            (TS, "INFO disk fine", None),
            (TS, "disk gone", "fatal"),
            (TS, "WARN cpu hot", None),
            (TS, "disk quiet", None),
        ]
        publish(self.broker, TOPIC, records[:2])
        warn = self.subscribe("format=json&level=warn&tail=10")
        both = self.subscribe("format=json&level=warn&log=disk")
        everything = self.subscribe("format=json")
        publish(self.broker, TOPIC, records[2:])

        def logs(client: Client) -> list[str]:
            return [json.loads(line)["log"] for line in client.body().splitlines()]

        self.assertEqual(logs(warn), ["ERROR disk full", "disk gone", "WARN cpu hot"])
        self.assertEqual(logs(both), ["disk gone"])
        self.assertEqual(logs(everything), ["disk gone", "WARN cpu hot", "disk quiet"])

    def test_badLevelOrAnsi(self) -> None:
        """
        A C{level} that names no level, or an C{ansi} other than keep or
        escape, is a 400 that says which.
        """
        for query, message in (
            ("level=loud", b"unknown level 'loud'"),
            ("ansi=raw", b"ansi must be keep or escape, not 'raw'"),
        ):
            head, body = self.subscribe(query).response()
            self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
            self.assertIn(message, body)

    def test_resume(self) -> None:
        """
        C{Last-Event-ID} (or C{?last_event_id=}) replays every matching
        record after that id, then streams live.
        """
        publish(self.broker, TOPIC, [(TS, str(i), None) for i in range(5)])
        header = Client(
            self.site,
            f"GET /?format=sse HTTP/1.1\r\nLast-Event-ID: {START}-3\r\n\r\n".encode(),
        )
        query = self.subscribe(f"format=json&last_event_id={START}-3&tail=1")
        publish(self.broker, TOPIC, [(TS, "live", None)])
        self.assertEqual(
            [e["id"] for e in sseEvents(header.body())], [f"{START}-{i}" for i in (4, 5, 6)]
        )
        self.assertEqual([json.loads(line)["seq"] for line in query.body().splitlines()], [4, 5, 6])

    def test_resumePastHistory(self) -> None:
        """
        Resuming from an id history no longer reaches says exactly how many
        records it no longer has, then replays what it has.
        """
        self.broker = Broker(Settings(history=3), start=START)
        self.makeSite()
        publish(self.broker, TOPIC, [(TS, str(i), None) for i in range(10)])
        client = self.subscribe(f"format=sse&last_event_id={START}-2")
        dropped, *events = sseEvents(client.body())
        self.assertEqual(dropped["event"], "dropped")
        notice = json.loads(dropped["data"])
        self.assertEqual(notice["dropped"], 5)
        self.assertIn(
            f"5 records after event id {START}-2 are no longer in history", notice["notice"]
        )
        self.assertEqual([e["id"] for e in events], [f"{START}-{i}" for i in (8, 9, 10)])

    def test_resumeFromEarlierRun(self) -> None:
        """
        An id from before a restart is answered with a notice and never
        taken for a seq of this run: every record of this run came after
        it, so all of them are replayed, then the live ones follow.
        """
        publish(self.broker, TOPIC, [(TS, str(i), None) for i in range(3)])
        client = self.subscribe("format=sse&last_event_id=1600000000000-1")
        publish(self.broker, TOPIC, [(TS, "live", None)])
        notice, *records = sseEvents(client.body())
        self.assertEqual(notice["event"], "notice")
        self.assertIn("earlier run of this server", json.loads(notice["data"])["notice"])
        self.assertEqual([event["id"] for event in records], [f"{START}-{i}" for i in range(1, 5)])
        self.assertEqual(
            [json.loads(event["data"])["log"] for event in records], ["0", "1", "2", "live"]
        )


class WrongPortTests(ResourceTestCase):
    """
    A publisher's stream sent to the subscriber port.
    """

    def test_publisherStreams(self) -> None:
        """
        Seed JSON, syslog (newline-framed or octet-counted) get a 400 at
        once that names the publisher port, counted as a refusal; the
        connection closes.
        """
        for number, stream in enumerate(
            [b'{"app":"shop"}{"raw":"x"}', b"<13>Dec  5 01:02:03 h app: x\n", b"\r\n42 <13>1 -"], 1
        ):
            client = Client(self.site, stream)
            head, body = client.response()
            self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
            self.assertIn(b"subscriber (HTTP) port", body)
            self.assertIn(b"publisher port (7701", body)
            self.assertTrue(client.transport.disconnecting)
            self.assertEqual(self.broker.stats.refusals["subscriber"], number)


class PipelineTests(ResourceTestCase):
    """
    Pipelined requests whose answers the client does not read.
    """

    def test_oneAnswerPerRead(self) -> None:
        """
        While the transport holds answers the client has not read, the
        requests read with them wait, and reading stops: each time the
        answers are sent, the next request is taken, until all are answered.
        """
        transport = PausingTransport()
        request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        client = Client(self.site, request * 20, transport)
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 "), 1)
        self.assertEqual(transport.producerState, "paused")
        for answered in range(2, 21):
            client.channel.resumeProducing()
            self.assertEqual(transport.value().count(b"HTTP/1.1 200 "), answered)
        self.assertFalse(transport.disconnecting)

    def test_unreadAnswersLetGo(self) -> None:
        """
        A client that reads none of its answers for L{UNREAD_DEADLINE}
        seconds is disconnected; one that waits for its next request is
        not held to that deadline meanwhile.
        """
        transport = PausingTransport()
        request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        Client(self.site, request * 3, transport)
        self.clock.advance(REQUEST_DEADLINE + 1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(UNREAD_DEADLINE)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.broker.stats.refusals["subscriber"], 1)


class ReservedPathTests(ResourceTestCase):
    """
    The reserved paths answer for themselves and never subscribe.
    """

    def request(self, path: str, method: bytes = b"GET") -> tuple[bytes, bytes]:
        client = Client(
            self.site, method + b" " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        head, body = client.response()
        if b"Transfer-Encoding: chunked" in head:
            body = dechunk(body)[0]
        return head, body

    def test_wrongMethods(self) -> None:
        """
        Every path of the table answers a method it does not take with one
        kind of 405: an C{Allow} header with its methods, a line naming
        the method to use, counted as a refusal; and nothing subscribes.
        """
        for path, allowed, wrong in [
            ("/", b"GET, HEAD", b"POST"),
            ("/anything", b"GET, HEAD", b"PUT"),
            ("/healthz", b"GET, HEAD", b"DELETE"),
            ("/metrics", b"GET, HEAD", b"POST"),
            ("/topics", b"GET, HEAD", b"PATCH"),
            ("/ui/", b"GET, HEAD", b"POST"),
            ("/publish?app=a", b"POST", b"GET"),
            ("/v1/logs", b"POST", b"PUT"),
        ]:
            refused = self.broker.stats.refusals["subscriber"]
            head, body = self.request(path, wrong)
            self.assertTrue(head.startswith(b"HTTP/1.1 405 "), path)
            self.assertIn(b"\r\nAllow: " + allowed + b"\r\n", head, path)
            self.assertTrue(body.startswith(b"method not allowed: "), path)
            self.assertIn(allowed.partition(b",")[0], body, path)
            self.assertEqual(self.broker.stats.refusals["subscriber"], refused + 1, path)
        self.assertEqual(self.broker.subscribers, ())

    def test_healthz(self) -> None:
        """
        C{/healthz} is 200 C{ok}, and ends.
        """
        head, body = self.request("/healthz")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "))
        self.assertEqual(body, b"ok\n")
        self.assertEqual(self.broker.subscribers, ())

    def test_notFound(self) -> None:
        """
        C{/favicon.ico}, and the reserved paths with nothing behind them,
        are 404s; the publishing paths answer a GET with 405.
        """
        for path in ("/favicon.ico", "/ui/other.js", "/v1/traces", "/healthz/x"):
            head, _ = self.request(path)
            self.assertTrue(head.startswith(b"HTTP/1.1 404 "), path)
        for path in ("/publish", "/v1/logs"):
            head, _ = self.request(path)
            self.assertTrue(head.startswith(b"HTTP/1.1 405 "), path)
        self.assertEqual(self.broker.subscribers, ())

    def test_methods(self) -> None:
        """
        The reports answer HEAD without a body, and other methods with 405.
        """
        head, body = self.request("/healthz", b"HEAD")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "))
        self.assertEqual(body, b"")
        self.assertTrue(self.request("/topics", b"POST")[0].startswith(b"HTTP/1.1 405 "))

    def test_topics(self) -> None:
        """
        C{/topics} lists each topic: records, last record time, publishers now.
        """
        publication = self.broker.publisher(TOPIC, "seed")
        publication.publish([(TS, "a", None), ("2016-12-06T22:14:22.000", "b", None)], 2)
        publish(self.broker, Topic("cron", "-", "h"), [(TS, "c", None)])
        head, body = self.request("/topics")
        self.assertIn(b"Content-Type: application/json", head)
        self.assertEqual(
            json.loads(body),
            [
                {
                    "app": "cron",
                    "proc": "-",
                    "host": "h",
                    "records": 1,
                    "last": f"{TS}Z",
                    "publishers": 0,
                },
                {
                    "app": "myapp",
                    "proc": "web",
                    "host": "foobar",
                    "records": 2,
                    "last": "2016-12-06T22:14:22.000Z",
                    "publishers": 1,
                },
            ],
        )

    def test_metrics(self) -> None:
        """
        C{/metrics} is Prometheus text with the server's counters.
        """
        self.makeSite(buffer=1)
        slow = self.subscribe("format=json")
        slow.transport.producer.pauseProducing()
        self.subscribe()
        publish(self.broker, TOPIC, [(TS, "a", None), (TS, "b", None)])
        self.subscribe("ap=x")
        head, body = self.request("/metrics")
        self.assertIn(b"Content-Type: text/plain; version=", head)
        samples = parseMetrics(body.decode())
        self.assertEqual(samples[("logio_records_in_total", (("protocol", "test"),))], 2)
        self.assertEqual(samples[("logio_lines_out_total", (("format", "text"),))], 2)
        self.assertEqual(samples[("logio_lines_out_total", (("format", "json"),))], 2)
        self.assertEqual(samples[("logio_lines_dropped_total", (("format", "json"),))], 1)
        self.assertEqual(samples[("logio_refusals_total", (("side", "subscriber"),))], 1)
        self.assertGreater(samples[("logio_bytes_out_total", ())], 0)
        self.assertEqual(samples[("logio_subscribers", ())], 2)
        self.assertEqual(samples[("logio_publishers", ())], 0)
        self.assertEqual(samples[("logio_history_records", ())], 2)
        self.assertEqual(samples[("logio_history_bytes", ())], 2 * (1 + 64))


class RetentionTests(ResourceTestCase):
    """
    What a subscriber held is freed when it leaves, by reference counting
    alone.
    """

    def leave(self, client: Client) -> None:
        """
        Lose C{client}'s connection as a socket transport does: it lets go
        of its producer, then tells the protocol.
        """
        producer = client.transport.producer
        client.transport.producer = None
        if producer is not None:
            producer.stopProducing()
        client.channel.connectionLost(Exception("gone"))

    def test_noCycles(self) -> None:
        """
        With the cyclic garbage collector off, a subscription (queue and
        all), its request and its channel are gone as soon as the client
        leaves: live, or after a replay.
        """
        gc.disable()
        self.addCleanup(gc.enable)
        made: list[weakref.ref[Stream]] = []
        original = Stream.__init__

        def recording(subscription: Stream, *args: Any) -> None:
            original(subscription, *args)
            made.append(weakref.ref(subscription))

        self.patch(Stream, "__init__", recording)
        publish(self.broker, TOPIC, [(TS, "x" * 100, None)] * 100)
        for query in ("app=myapp", "format=sse&tail=5", "tail=100&follow=0"):
            client = self.subscribe(query)
            if not client.transport.disconnecting:
                client.transport.producer.pauseProducing()
            publish(self.broker, TOPIC, [(TS, "y" * 100, None)] * 100)
            refs = [made[-1], weakref.ref(client.channel)]
            subscription = made[-1]()
            if subscription is not None and subscription._request is not None:
                refs.append(weakref.ref(subscription._request))
            del subscription
            self.leave(client)
            client.channel.transport = None
            del client
            self.assertEqual([ref() for ref in refs], [None] * len(refs), query)


class LimitTests(ResourceTestCase):
    """
    Every limit of the subscriber port, and its refusal.
    """

    def status(self, client: Client) -> bytes:
        return client.transport.value().split(b"\r\n", 1)[0]

    def test_maxSubscribers(self) -> None:
        """
        Past C{maxSubscribers} open subscriptions a new one gets 503; when
        one leaves there is room again.
        """
        self.makeSite(maxSubscribers=2)
        first = self.subscribe()
        self.subscribe("tail=5")
        refused = self.subscribe()
        self.assertEqual(self.status(refused), b"HTTP/1.1 503 Service Unavailable")
        self.assertIn(b"too many subscribers (2)", refused.response()[1])
        first.channel.connectionLost(Exception("gone"))
        self.assertEqual(self.status(self.subscribe()), b"HTTP/1.1 200 OK")
        self.assertEqual(self.broker.stats.refusals, {"subscriber": 1})

    def test_maxLogFilters(self) -> None:
        """
        Past C{maxLogFilters} distinct C{log=} patterns a new pattern gets
        503; a pattern already in use is shared and always welcome.
        """
        self.makeSite(maxLogFilters=1)
        first = self.subscribe("log=a")
        second = self.subscribe("log=a")
        self.assertEqual(self.status(second), b"HTTP/1.1 200 OK")
        refused = self.subscribe("log=b")
        self.assertEqual(self.status(refused), b"HTTP/1.1 503 Service Unavailable")
        self.assertIn(b"too many distinct log= patterns (1)", refused.response()[1])
        self.assertEqual(self.status(self.subscribe("app=x")), b"HTTP/1.1 200 OK")
        for client in (first, second):
            client.channel.connectionLost(Exception("gone"))
        self.assertEqual(self.status(self.subscribe("log=b")), b"HTTP/1.1 200 OK")

    def test_maxQueuedBytes(self) -> None:
        """
        All queues together stay within C{maxQueuedBytes}: the biggest
        queue drops its oldest records first, and says so.
        """
        line = f"{TS} myapp[web] foobar: " + "x" * 70 + "\n"
        self.makeSite(maxQueuedBytes=len(line) * 10)
        big = self.subscribe()
        small = self.subscribe("log=keep")
        for client in (big, small):
            client.transport.producer.pauseProducing()
        publish(self.broker, TOPIC, [(TS, "keep" + "x" * 66, None)] * 3)
        publish(self.broker, TOPIC, [(TS, "x" * 70, None)] * 6)
        [bigSubscription, smallSubscription] = self.broker.subscribers
        self.assertEqual(bigSubscription.queued, (7, len(line) * 7))
        self.assertEqual(smallSubscription.queued, (3, len(line) * 3))
        for client in (big, small):
            client.transport.producer.resumeProducing()
        self.assertIn(": 2 lines dropped:", big.body().decode().splitlines()[0])
        self.assertEqual(len(small.body().splitlines()), 3)

    def test_maxQueuedBytesCountsStalledTransports(self) -> None:
        """
        What the transports of stalled subscribers hold counts in
        C{maxQueuedBytes} too, until they have sent it: past the bound with
        no queue left to shed, the stalled subscriber holding the most is
        disconnected.
        """
        self.makeSite(maxQueuedBytes=1000)
        (first, firstSocket), (second, secondSocket) = self.socketClient(), self.socketClient()
        firstSocket.dataBuffer = b"x" * 800
        with capturedLogs() as events:
            first.transport.producer.pauseProducing()
            self.assertFalse(first.transport.disconnecting)
            secondSocket.dataBuffer = b"y" * 600
            second.transport.producer.pauseProducing()
        self.assertTrue(first.transport.disconnecting)
        self.assertFalse(second.transport.disconnecting)
        [event] = events
        self.assertIn("disconnecting one that is not reading", formatEvent(event))
        # Once its transport has sent everything, the other holds nothing.
        secondSocket.dataBuffer = b""
        second.transport.producer.resumeProducing()
        self.assertEqual(self.site.bodies.find(b"/")[0].resource._budget.total, 0)

    def test_requestDeadline(self) -> None:
        """
        A request line and headers that do not arrive within 10 s, however
        slowly they trickle in, get 408 and the connection is closed.
        """
        client = Client(self.site, b"GET /?app=x HTTP/1.1\r\n")
        for _ in range(9):
            self.clock.advance(1)
            client.channel.dataReceived(b"X-Slow: 1\r\n")
        self.assertEqual(client.transport.value(), b"")
        self.clock.advance(1)
        self.assertEqual(self.status(client), b"HTTP/1.1 408 Request Timeout")
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(self.broker.subscribers, ())

    def test_deadlineEndsWithTheHeaders(self) -> None:
        """
        Once its headers are in, a subscription streams for as long as it
        likes; a persistent connection's next request gets its own deadline.
        """
        client = self.subscribe()
        self.clock.advance(60)
        publish(self.broker, TOPIC, [(TS, "late", None)])
        self.assertIn(b"late", client.body())
        self.assertFalse(client.transport.disconnecting)
        health = Client(self.site, b"GET /healthz HTTP/1.1\r\n\r\n")
        self.assertIn(b"ok\n", health.transport.value())
        self.clock.advance(10)
        self.assertIn(b"408 Request Timeout", health.transport.value())

    def test_bodyTooLarge(self) -> None:
        """
        A request body over 64 KiB gets 413 as soon as that is known, and
        is never spooled to a temporary file; a small one is fine.
        """
        declared = Client(self.site, b"GET / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n")
        self.assertEqual(self.status(declared), b"HTTP/1.1 413 Payload Too Large")
        self.assertTrue(declared.transport.disconnecting)
        chunked = Client(self.site, b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(20):
            chunked.channel.dataReceived(b"1000\r\n" + b"x" * 4096 + b"\r\n")
        self.assertEqual(self.status(chunked), b"HTTP/1.1 413 Payload Too Large")
        [request] = chunked.channel.requests
        self.assertNotIsInstance(request.content, BytesIO)
        small = Client(self.site, b"GET /?app=x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        self.assertEqual(self.status(small), b"HTTP/1.1 200 OK")
        self.assertEqual(len(self.broker.subscribers), 1)

    def test_tlsOnPlainPort(self) -> None:
        """
        A TLS ClientHello on the plain HTTP port is logged as such and the
        connection closed, with no answer it could not read; a request
        that merely holds the byte later is served.
        """
        with capturedLogs() as events:
            client = Client(self.site, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
        self.assertEqual(client.transport.value(), b"")
        self.assertTrue(client.transport.disconnecting)
        logged = "".join(formatEvent(event) for event in events)
        self.assertIn("TLS on a plain HTTP port", logged)
        self.assertIn("a TLS ClientHello on a plain HTTP port", logged)
        self.assertEqual(self.broker.stats.refusals["subscriber"], 1)
        later = Client(self.site, get("log=%16"))
        self.assertEqual(self.status(later), b"HTTP/1.1 200 OK")

    def test_halfClosedSubscriber(self) -> None:
        """
        A client that half-closes after its request still gets its stream
        (and a one-shot answer, after which the connection closes).
        """
        client = self.subscribe()
        client.channel.readConnectionLost()
        publish(self.broker, TOPIC, [(TS, "still sent", None)])
        self.assertIn(b"still sent", client.body())
        self.assertFalse(client.transport.disconnecting)
        health = Client(self.site, b"GET /healthz HTTP/1.1\r\n\r\n")
        health.channel.readConnectionLost()
        self.assertIn(b"ok\n", health.transport.value())
        self.assertTrue(health.transport.disconnecting)


class ProtectedModeTests(SynchronousTestCase):
    """
    Without tokens and without C{--public}, the subscriber port answers
    this machine's peers only.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.broker = Broker(Settings(), start=START)

    def client(self, host: str, protected: bool = True) -> Client:
        site = makeTestSite(self.broker, self.clock, protected=protected)
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 54321))
        return Client(site, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n", transport)

    def test_beyondRefused(self) -> None:
        """
        A peer beyond this machine gets a 403 that names --auth and
        --public, counted as a refusal, and its connection closes.
        """
        client = self.client("192.168.1.1")
        head, body = client.response()
        self.assertTrue(head.startswith(b"HTTP/1.1 403 "), head)
        self.assertIn(b"--auth FILE", body)
        self.assertIn(b"--public", body)
        self.assertTrue(client.transport.disconnecting)
        self.assertEqual(self.broker.stats.refusals["subscriber"], 1)

    def test_localAndPublicAnswered(self) -> None:
        """
        A loopback peer is answered; so is any peer with --public.
        """
        for host, protected in (("127.0.0.1", True), ("::1", True), ("192.168.1.1", False)):
            head, body = self.client(host, protected).response()
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), (host, head))
            self.assertEqual(body, b"ok\n")
        self.assertEqual(self.broker.stats.refusals["subscriber"], 0)
