"""
Tests for L{logio.ingest.http}: C{POST /publish} (text and NDJSON, read as it
streams) and OTLP/HTTP logs at C{/v1/logs}, through a real L{Site}.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.task import Cooperator
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from logio.auth import Tokens
from logio.broker import Broker
from logio.filters import Filters
from logio.ingest import otlp
from logio.settings import Settings
from logio.topic import Record, Topic
from logio.web import site
from logio.web.channel import BODY_DEADLINE
from tests.support.fakes import makeTestSite
from tests.support.http import Client, chunk
from tests.support.payloads import COLLECTOR_EXPORT
from tests.support.tokens import tokensFile

START = 1700000000000
NOW_TS = "2023-11-14T22:13:20.000"
TOKEN = "ingest-token-0123456789"


def post(path: str, body: bytes, *headers: str, chunked: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", *headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        framed = chunk(body) + b"0\r\n\r\n" if body else b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        framed = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + framed


class IngestTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(START / 1000)
        self.makeSite(Settings(history=1000, historyBytes=1 << 20))

    def makeSite(self, settings: Settings) -> None:
        self.broker = Broker(settings, self.clock, START)
        self.site = makeTestSite(self.broker, self.clock, settings, self.tokens())

    def tokens(self) -> Tokens | None:
        return None

    def records(self) -> list[tuple[Topic, Record]]:
        replay = self.broker.replay(Filters(), 1000)
        return [(run.topic, record) for run in replay.runs for record in run.records]

    def answer(self, client: Client) -> tuple[int, Any]:
        head, body = client.response()
        status = int(head.split(b" ", 2)[1])
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode()


class PublishTests(IngestTestCase):
    """
    C{POST /publish}.
    """

    def test_text(self) -> None:
        """
        A text body: one record per line with the receive time, a last line
        without a newline included, CRLF and blank lines dropped.
        """
        client = Client(self.site, post("/publish?app=web&proc=p&host=h", b"one\r\ntwo\n\nthree"))
        self.assertEqual(self.answer(client), (200, {"accepted": 3, "rejected": 0}))
        topic = Topic("web", "p", "h")
        self.assertEqual(
            self.records(),
            [
                (topic, (NOW_TS, "one", None)),
                (topic, (NOW_TS, "two", None)),
                (topic, (NOW_TS, "three", None)),
            ],
        )

    def test_ndjson(self) -> None:
        """
        NDJSON: each object's fields, the query's for those it lacks; bad
        lines are rejected with reasons and lose nothing else.
        """
        body = b"\n".join(
            [
                b'{"app": "a1", "proc": "w", "host": "h", "log": "first", "time": "2020-01-01T00:00:00Z"}',
                b"not json",
                b'{"log": "from the query"}',
                b'["not", "an object"]',
                b'{"app": "bad app", "log": "x"}',
                b'{"app": "a1"}',
                b'{"log": {"structured": true}}',
            ]
        )
        client = Client(
            self.site, post("/publish?app=q&host=qh", body, "Content-Type: application/x-ndjson")
        )
        status, answer = self.answer(client)
        self.assertEqual((status, answer["accepted"], answer["rejected"]), (200, 3, 4))
        self.assertEqual(
            answer["errors"][0], "line 2: not JSON: Expecting value: line 1 column 1 (char 0)"
        )
        self.assertEqual(
            [e.partition(":")[0] for e in answer["errors"]],
            ["line 2", "line 4", "line 5", "line 6"],
        )
        self.assertEqual(
            self.records(),
            [
                (Topic("a1", "w", "h"), ("2020-01-01T00:00:00.000", "first", None)),
                (Topic("q", "-", "qh"), (NOW_TS, "from the query", None)),
                (Topic("q", "-", "qh"), (NOW_TS, '{"structured": true}', None)),
            ],
        )

    def test_streamedAsItArrives(self) -> None:
        """
        Lines are published as the body arrives, before it is complete, and
        only the line not ended yet is held.
        """
        head = post("/publish?app=s", b"", chunked=True)[: -len(b"0\r\n\r\n")]
        client = Client(self.site, head)
        client.channel.dataReceived(b"6\r\nline1\n\r\n")
        self.assertEqual([record[1] for _, record in self.records()], ["line1"])
        client.channel.dataReceived(b"4\r\npart\r\n")
        [request] = client.channel.requests
        self.assertEqual(request.content.splitter.pending, b"part")
        client.channel.dataReceived(b"6\r\nial\nx\n\r\n0\r\n\r\n")
        self.assertEqual([record[1] for _, record in self.records()], ["line1", "partial", "x"])
        self.assertEqual(self.answer(client), (200, {"accepted": 3, "rejected": 0}))

    def test_cutShort(self) -> None:
        """
        A client that goes away in the middle of its body keeps what it
        published, and its publications are closed (its topic may retire).
        """
        head = post("/publish?app=gone", b"", chunked=True)[: -len(b"0\r\n\r\n")]
        client = Client(self.site, head)
        client.channel.dataReceived(b"6\r\nline1\n\r\n")
        self.assertEqual([info.publishers for info in self.broker.topics()], [1])
        client.channel.connectionLost(Exception("gone"))
        self.assertEqual([record[1] for _, record in self.records()], ["line1"])
        self.assertEqual([info.publishers for info in self.broker.topics()], [0])

    def test_overLongLine(self) -> None:
        """
        A text line longer than --max-line is cut and marked; an NDJSON one
        is rejected; both go on with the next line.
        """
        self.makeSite(Settings(history=1000, historyBytes=1 << 20, maxLine=15))
        client = Client(self.site, post("/publish?app=s", b"x" * 25 + b"\nnext\n"))
        self.assertEqual(self.answer(client)[1]["accepted"], 2)
        self.assertEqual(
            [record[1] for _, record in self.records()], ["x" * 15 + " [truncated]", "next"]
        )
        client = Client(
            self.site,
            post(
                "/publish?app=s",
                b'{"log": "0123456789"}\n{"log":"ok"}',
                "Content-Type: application/x-ndjson",
            ),
        )
        self.assertEqual(self.answer(client)[1]["rejected"], 1)

    def test_badQuery(self) -> None:
        """
        A text body needs an app in the query: 400 before the body is read.
        """
        client = Client(self.site, post("/publish?proc=x", b"lost\n"))
        status, answer = self.answer(client)
        self.assertEqual(status, 400)
        self.assertIn("the topic needs a non-empty 'app'", answer)
        self.assertEqual(self.records(), [])

    def test_webPageRefused(self) -> None:
        """
        Without --auth, a request with an Origin header (a web page's) may
        not publish.
        """
        client = Client(
            self.site, post("/publish?app=victim", b"forged\n", "Origin: http://evil.example")
        )
        status, answer = self.answer(client)
        self.assertEqual(status, 403)
        self.assertIn("may not publish to a server without --auth", answer)
        self.assertEqual(self.records(), [])

    def test_get(self) -> None:
        """
        Other methods get 405.
        """
        client = Client(self.site, b"GET /publish?app=x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(self.answer(client), (405, "method not allowed: publish with POST\n"))


class GuardedPublishTests(IngestTestCase):
    """
    C{POST /publish} on a server with C{--auth}.
    """

    def tokens(self) -> Tokens | None:
        return Tokens(tokensFile(self, f"{TOKEN} pub web\nreader-token-0123456 sub .*\n"))

    def test_refusedBeforeTheBody(self) -> None:
        """
        No token is a 401 and a reader's token a 403, answered before the
        body arrives; nothing is published.
        """
        for headers, code in [((), 401), (("Authorization: Bearer reader-token-0123456",), 403)]:
            head = post("/publish?app=web", b"", *headers, chunked=True)[: -len(b"0\r\n\r\n")]
            client = Client(self.site, head)
            self.assertEqual(self.answer(client)[0], code)
            self.assertTrue(client.transport.disconnecting)
            client.channel.dataReceived(b"5\r\nlost\n\r\n")
        self.assertEqual(self.records(), [])

    def test_appsOfTheToken(self) -> None:
        """
        A text body for an app the token does not allow is a 400; NDJSON
        lines for such apps are rejected.
        """
        client = Client(self.site, post(f"/publish?app=mail&token={TOKEN}", b"x\n"))
        self.assertEqual(
            self.answer(client), (400, "this token may not publish to the app 'mail'\n")
        )
        body = b'{"app": "web", "log": "in"}\n{"app": "mail", "log": "out"}\n'
        client = Client(
            self.site,
            post(
                "/publish",
                body,
                f"Authorization: Bearer {TOKEN}",
                "Content-Type: application/x-ndjson",
            ),
        )
        self.assertEqual(self.answer(client)[1]["accepted"], 1)
        self.assertEqual([record[1] for _, record in self.records()], ["in"])


class OTLPTests(IngestTestCase):
    """
    C{POST /v1/logs}.
    """

    def test_collectorJSON(self) -> None:
        """
        An export shaped as the Collector sends it: app, proc and host from
        the resource, the record's time (or the observed time), the body's
        string or compact JSON; the answer is an empty response.
        """
        client = Client(
            self.site,
            post(
                "/v1/logs", json.dumps(COLLECTOR_EXPORT).encode(), "Content-Type: application/json"
            ),
        )
        self.assertEqual(self.answer(client), (200, {}))
        self.assertEqual(
            self.records(),
            [
                (
                    Topic("checkout", "i-42", "node-1"),
                    ("2018-12-13T14:51:00.300", "order 17 paid", "info"),
                ),
                (
                    Topic("checkout", "i-42", "node-1"),
                    ("2018-12-13T14:51:01.000", '{"event": "refund", "amount": 9.5}', None),
                ),
                (Topic("unknown_service", "4711", "192.168.1.1"), (NOW_TS, "no service", None)),
            ],
        )

    def test_protobuf(self) -> None:
        """
        The same export in protobuf, answered in protobuf.
        """
        from google.protobuf.json_format import ParseDict
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
            ExportLogsServiceResponse,
        )

        data = ParseDict(COLLECTOR_EXPORT, ExportLogsServiceRequest(), None).SerializeToString()
        client = Client(self.site, post("/v1/logs", data, "Content-Type: application/x-protobuf"))
        head, body = client.response()
        self.assertIn(b"application/x-protobuf", head)
        response = ExportLogsServiceResponse()
        response.ParseFromString(body)
        self.assertEqual(response.partial_success.rejected_log_records, 0)
        self.assertEqual(len(self.records()), 3)

    def export(self, count: int) -> dict[str, Any]:
        """
        An export of C{count} records of one resource, numbered.
        """
        return {
            "resourceLogs": [
                {
                    "resource": COLLECTOR_EXPORT["resourceLogs"][0]["resource"],
                    "scopeLogs": [
                        {"logRecords": [{"body": {"stringValue": str(n)}} for n in range(count)]}
                    ],
                }
            ]
        }

    def turns(self) -> list[Callable[[], None]]:
        """
        Make the OTLP resource work a piece per slice, and hand the reactor
        turns it asks for to the list returned, to run one at a time.
        """
        self.patch(otlp, "SLICE", -1.0)
        self.patch(otlp, "PIECE", 10)
        pending: list[Callable[[], None]] = []
        resource = self.site.bodies.find(b"/v1/logs")[0].resource
        resource._cooperator = Cooperator(
            terminationPredicateFactory=otlp._slice, scheduler=pending.append
        )
        return pending

    def test_inPieces(self) -> None:
        """
        A body that takes longer than a slice is published a piece at a
        time in later reactor turns, in order, in protobuf and JSON alike,
        and answered once it is all published.
        """
        from google.protobuf.json_format import ParseDict
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        turns = self.turns()
        export = self.export(95)
        bodies = [
            (json.dumps(export).encode(), "application/json"),
            (
                ParseDict(export, ExportLogsServiceRequest()).SerializeToString(),
                "application/x-protobuf",
            ),
        ]
        for number, (data, media) in enumerate(bodies, 1):
            client = Client(self.site, post("/v1/logs", data, f"Content-Type: {media}"))
            self.assertEqual(client.response()[1], b"", media)
            published = [len(self.records())]
            while not client.response()[1]:
                turns.pop(0)()
                published.append(len(self.records()))
            self.assertEqual(self.answer(client)[0], 200)
            # The resource at once, a piece of ten records a turn, and the
            # answer in a turn of its own.
            start = 95 * (number - 1)
            pieces = [start + min(n, 95) for n in range(10, 101, 10)]
            self.assertEqual(published, [start, *pieces, start + 95])
            texts = [record[1] for _, record in self.records()]
            self.assertEqual(texts, [str(n) for n in range(95)] * number)

    def test_clientGoesMidway(self) -> None:
        """
        A client that goes away while its body is published in pieces
        stops the publishing, and nothing more is answered.
        """
        turns = self.turns()
        body = json.dumps(self.export(95)).encode()
        client = Client(self.site, post("/v1/logs", body, "Content-Type: application/json"))
        turns.pop(0)()
        published = len(self.records())
        self.assertEqual(published, 10)
        client.channel.connectionLost(Exception("gone"))
        while turns:
            turns.pop(0)()
        self.assertEqual(len(self.records()), published)
        self.assertEqual(client.response()[1], b"")
        self.assertEqual(self.site.budget.held, 0)

    def test_badRequests(self) -> None:
        """
        Bad JSON is a 400, another media type a 415, a body over the bound
        a 413, another path under /v1 a 404.
        """
        self.assertEqual(
            self.answer(
                Client(self.site, post("/v1/logs", b"{", "Content-Type: application/json"))
            )[0],
            400,
        )
        self.assertEqual(
            self.answer(Client(self.site, post("/v1/logs", b"x", "Content-Type: text/plain")))[0],
            415,
        )
        self.patch(site, "MAX_OTLP_BODY", 10)
        self.makeSite(Settings())
        self.assertEqual(
            self.answer(
                Client(self.site, post("/v1/logs", b"{" * 11, "Content-Type: application/json"))
            )[0],
            413,
        )
        self.assertEqual(self.answer(Client(self.site, post("/v1/traces", b"{}")))[0], 404)


class GuardedOTLPTests(IngestTestCase):
    """
    C{/v1/logs} on a server with C{--auth}.
    """

    def tokens(self) -> Tokens | None:
        return Tokens(tokensFile(self, f"{TOKEN} pub checkout\n"))

    def test_partialSuccess(self) -> None:
        """
        Records of apps the token does not allow are rejected, and the
        answer says how many.
        """
        client = Client(
            self.site,
            post(
                "/v1/logs",
                json.dumps(COLLECTOR_EXPORT).encode(),
                "Content-Type: application/json",
                f"Authorization: Bearer {TOKEN}",
            ),
        )
        status, answer = self.answer(client)
        self.assertEqual(status, 200)
        self.assertEqual(answer["partialSuccess"]["rejectedLogRecords"], "1")
        self.assertIn("'unknown_service'", answer["partialSuccess"]["errorMessage"])
        self.assertEqual(len(self.records()), 2)

    def test_noToken(self) -> None:
        """
        No token is a 401.
        """
        client = Client(self.site, post("/v1/logs", b"{}", "Content-Type: application/json"))
        self.assertEqual(self.answer(client)[0], 401)


class BodyBoundTests(IngestTestCase):
    """
    What request bodies may hold together, and how long a large one may
    take to arrive.
    """

    def head(self, path: str, length: int) -> bytes:
        return post(path, b"", f"Content-Length: {length}")[: -len(b"Content-Length: 0\r\n\r\n")]

    def test_boundTogether(self) -> None:
        """
        Bodies held in memory count against C{--max-ingest-bytes} as they
        arrive: one that would pass it gets a 503 and its connection
        closes; what a request held is given back when it goes, and a
        later request fits again.
        """
        self.makeSite(Settings(maxIngestBytes=100_000))
        budget = self.site.budget
        first = Client(self.site, post("/v1/logs", b"{" * 60_000)[: -60_000 + 50_000])
        self.assertEqual(budget.held, 50_000)
        second = Client(self.site, post("/v1/logs", b"{" * 60_000))
        self.assertTrue(second.response()[0].startswith(b"HTTP/1.1 503 "), second.response())
        self.assertIn(b"bodies in flight", second.response()[1])
        self.assertTrue(second.transport.disconnecting)
        second.channel.connectionLost(Exception("gone"))
        self.assertEqual(budget.held, 50_000)
        first.channel.connectionLost(Exception("gone"))
        self.assertEqual(budget.held, 0)
        third = Client(self.site, post("/v1/logs", b"{" * 60_000))
        self.assertEqual(self.answer(third)[0], 400)
        self.assertEqual(budget.held, 0)

    def test_uploadsCountTheirLongestLine(self) -> None:
        """
        A streaming C{POST /publish} holds at most one line: it counts
        C{--max-line} against the bound for as long as it lasts, so uploads
        that trickle on hold their connections only up to the bound.
        """
        self.makeSite(Settings(maxLine=1000, maxIngestBytes=2500))
        head = post("/publish?app=u", b"", chunked=True)[: -len(b"0\r\n\r\n")]
        uploads = [Client(self.site, head + chunk(b"x")) for _ in range(2)]
        self.assertEqual(self.site.budget.held, 2000)
        refused = Client(self.site, head)
        self.assertTrue(refused.response()[0].startswith(b"HTTP/1.1 503 "), refused.response())
        uploads[0].channel.dataReceived(chunk(b"\n") + b"0\r\n\r\n")
        self.assertEqual(self.answer(uploads[0]), (200, {"accepted": 1, "rejected": 0}))
        self.assertEqual(self.site.budget.held, 1000)
        later = Client(self.site, head + chunk(b"y\n") + b"0\r\n\r\n")
        self.assertEqual(self.answer(later), (200, {"accepted": 1, "rejected": 0}))
        self.assertEqual(self.site.budget.held, 1000)

    def test_deadline(self) -> None:
        """
        A body larger than a small one must arrive within L{BODY_DEADLINE}:
        else a 408, the connection closes and what it held is given back.
        A small one, or a streaming upload, has no such deadline.
        """
        stalled = Client(self.site, post("/v1/logs", b"{" * 100_000)[:-50_000])
        upload = Client(self.site, post("/publish?app=u", b"", chunked=True)[:-5])
        self.assertGreater(self.site.budget.held, 50_000)
        # The upload trickles on: a byte every half deadline.
        self.clock.advance(BODY_DEADLINE / 2)
        upload.channel.dataReceived(chunk(b"x"))
        self.clock.advance(BODY_DEADLINE / 2 - 1)
        self.assertFalse(stalled.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(stalled.response()[0].startswith(b"HTTP/1.1 408 "), stalled.response())
        self.assertTrue(stalled.transport.disconnecting)
        stalled.channel.connectionLost(Exception("gone"))
        self.assertFalse(upload.transport.disconnecting)
        self.assertEqual(self.site.budget.held, Settings().maxLine)
