# -*- test-case-name: tests.test_ingest -*-
"""
Publishing over HTTP, on the subscriber port: C{POST
/publish?app=A&proc=P&host=H} takes a text body, one record per line
stamped with the receive time; or, with C{Content-Type:
application/x-ndjson}, one C{{"time", "app", "proc", "host", "log",
"level"}} object per line, a field it lacks taken from the query (a
C{level} that names none of L{logio.levels.LEVELS} is left out).  The body is split by the
L{LineSplitter} and published as it streams in, so an upload of any size
holds one line at most; the answer is C{{"accepted": N, "rejected": M}}.

On a server with C{--auth} it needs a token that may publish (the site's
gate checks it, see L{logio.web.gate}); a record for an app the token does
not allow is rejected.  OTLP is in L{logio.ingest.otlp}.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from logio.auth import Denied, grantOf
from logio.http import Refused, Sink, mediaType, reply
from logio.ingest.base import Publications, PublisherError, cleanText, makeTopic
from logio.ingest.lines import LineSplitter
from logio.ingest.otlp import OTLPResource
from logio.interfaces import IBroker, IGrant, IHTTPIngest
from logio.levels import fromName
from logio.net import peerHost
from logio.settings import Settings
from logio.topic import Record, StampParser, Topic, formatEpoch

#: How many reasons for rejected lines an answer lists.
MAX_ERRORS = 10

_NDJSON = (b"application/x-ndjson", b"application/jsonl", b"application/json-lines")


class LineBody(Sink):
    """
    The body of a C{POST /publish}, split into lines and published as it
    arrives: a file for L{Request.content} that keeps only the line not
    ended yet.

    @ivar splitter: What splits it into lines.
    @ivar accepted: Records published.
    @ivar rejected: Lines refused (a bad JSON object, a bad or forbidden
        topic); the first few reasons are in C{errors}.
    """

    def __init__(
        self,
        broker: IBroker,
        now: Callable[[], str],
        stamps: StampParser,
        maxLine: int,
        query: dict[str, Optional[str]],
        peer: str,
        ndjson: bool,
        grant: Optional[IGrant],
    ) -> None:
        self._publications = Publications(broker, "http")
        self._now = now
        self._stamps = stamps
        self._maxLine = maxLine
        self._query = query
        self._peer = peer
        self._ndjson = ndjson
        self._grant = grant
        self.splitter = LineSplitter(maxLine, self._lines)
        # The splitter keeps at most the line not ended yet.
        self.most = maxLine
        self._line = 0
        self._topic: Optional[Topic] = None
        self.accepted = 0
        self.rejected = 0
        self.errors: list[str] = []

    def checkQuery(self) -> Optional[str]:
        """
        What is wrong with the topic of the query, for a text body (an
        NDJSON body may name its topics line by line).
        """
        if self._ndjson:
            return None
        query = self._query
        try:
            self._topic = makeTopic(query["app"], query["proc"], query["host"], self._peer)
            if self._grant is not None:
                self._grant.check(self._topic.app)
        except PublisherError as e:
            return f"{e} (POST /publish?app=APP&proc=PROC&host=HOST)"
        except Denied as e:
            return str(e)
        return None

    def write(self, data: bytes) -> None:
        self.splitter.feed(data)

    def _lines(self, lines: list[bytes]) -> None:
        """
        Publish complete lines (a line longer than C{maxLine} is one that
        was cut).
        """
        if not self._ndjson:
            self._textLines(lines)
            return
        batches: dict[Topic, list[Record]] = {}
        size = 0
        for line in lines:
            self._line += 1
            if not line:
                continue
            size += len(line)
            if len(line) > self._maxLine:
                self._reject(f"longer than {self._maxLine} bytes")
                continue
            found = self._record(line)
            if found is not None:
                topic, record = found
                batches.setdefault(topic, []).append(record)
                self.accepted += 1
        self._publications.publish(batches, size)

    def _textLines(self, lines: list[bytes]) -> None:
        """
        Publish complete text lines, all of the query's topic, in one batch
        (blank ones skipped).
        """
        assert self._topic is not None
        self._line += len(lines)
        joined = b"\n".join(lines)
        stamp = self._now()
        records: list[Record] = [
            (stamp, line, None) for line in joined.decode("utf-8", "replace").split("\n") if line
        ]
        self.accepted += len(records)
        self._publications.publish({self._topic: records}, len(joined))

    def _record(self, line: bytes) -> Optional[tuple[Topic, Record]]:
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as e:
            self._reject(f"not JSON: {e}")
            return None
        if not isinstance(value, dict):
            self._reject("not a JSON object")
            return None
        query = self._query
        try:
            topic = makeTopic(
                value.get("app", query["app"]),
                value.get("proc", query["proc"]),
                value.get("host", query["host"]),
                self._peer,
            )
            if self._grant is not None:
                self._grant.check(topic.app)
        except (PublisherError, Denied) as e:
            self._reject(str(e))
            return None
        if "log" not in value:
            self._reject("no 'log'")
            return None
        time = value.get("time")
        stamp = self._stamps(time) if isinstance(time, str) else None
        return topic, (stamp or self._now(), cleanText(value["log"]), fromName(value.get("level")))

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"line {self._line}: {reason}")

    def finish(self) -> None:
        """
        The body is complete: publish a last line without a newline, and
        close the publications.
        """
        self.splitter.end()
        self._publications.close()

    def close(self) -> None:
        self._publications.close()


class PublishResource(Resource):
    """
    C{POST /publish}: see the module docstring.  The body was published
    as it arrived (see L{Ingest.publishBody}); this answers.
    """

    isLeaf = True

    def render_POST(self, request: Request) -> bytes:
        body = request.content
        if not isinstance(body, LineBody):
            return reply(request, 400, "nothing to publish")
        body.finish()
        request.setHeader(b"content-type", b"application/json")
        answer: dict[str, Any] = {"accepted": body.accepted, "rejected": body.rejected}
        if body.errors:
            answer["errors"] = body.errors
        return (json.dumps(answer) + "\n").encode()


@implementer(IHTTPIngest)
class Ingest:
    """
    HTTP ingest: the resources of its paths, and what they share (the
    broker, the clock, C{--max-line}).
    """

    def __init__(self, broker: IBroker, clock: IReactorTime, settings: Settings) -> None:
        self.broker = broker
        self.clock = clock
        self.maxLine = settings.maxLine
        self.stamps = StampParser()
        self.publish = PublishResource()
        self.otlp = OTLPResource(broker, clock)

    def now(self) -> str:
        return formatEpoch(self.clock.seconds())

    def publishBody(self, request: Request) -> LineBody:
        """
        The body sink of a C{POST /publish}, before its body arrives.

        @raise Refused: If its query names a bad topic (for a text body).
        """
        args = request.args or {}
        query = {
            name: args[name.encode()][0].decode("utf-8", "replace")
            if args.get(name.encode())
            else None
            for name in ("app", "proc", "host")
        }
        body = LineBody(
            self.broker,
            self.now,
            self.stamps,
            self.maxLine,
            query,
            peerHost(request.channel.transport),
            mediaType(request) in _NDJSON,
            grantOf(request),
        )
        problem = body.checkQuery()
        if problem is not None:
            raise Refused(400, problem, "bad topic", "publisher")
        return body
