# -*- test-case-name: tests.test_ingest -*-
"""
Publishing over HTTP, on the subscriber port:

  - C{POST /publish?app=A&proc=P&host=H}: a text body, one record per line
    stamped with the receive time; or, with C{Content-Type:
    application/x-ndjson}, one C{{"time", "app", "proc", "host", "log"}}
    object per line, a field it lacks taken from the query.  The body is
    parsed and published as it streams in, so an upload of any size holds
    one line at most; the answer is C{{"accepted": N, "rejected": M}}.
  - C{POST /v1/logs}: OpenTelemetry logs over OTLP/HTTP, JSON (or protobuf,
    where C{opentelemetry-proto} is installed); app = the resource's
    C{service.name}, proc = C{service.instance.id} or C{process.pid}, host
    = C{host.name}, time = C{timeUnixNano} (or C{observedTimeUnixNano}), log
    = the body's string (other bodies as compact JSON).

On a server with C{--auth} both need a token that may publish (see
L{logio.web.gate}); a record for an app the token does not allow is rejected.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request

from logio.auth import grantOf
from logio.fields import RESERVED_APP, acceptable
from logio.ingest.base import TRUNCATED, Publications, PublisherError, makeTopic
from logio.ingest.seed import cleanText
from logio.interfaces import IBroker, IGrant
from logio.net import peerHost
from logio.topic import Record, StampParser, Topic, formatEpoch
from logio.web.status import reply

#: The largest OTLP request body taken, in bytes (it is decoded whole).
MAX_OTLP_BODY = 16 * 1024 * 1024
#: How many reasons for rejected lines an answer lists.
MAX_ERRORS = 10
_TRUNCATED = TRUNCATED.encode()
#: The app of OpenTelemetry records whose resource has no C{service.name}.
OTLP_APP = "unknown_service"

_NDJSON = (b"application/x-ndjson", b"application/jsonl", b"application/json-lines")


def _mediaType(request: Request) -> bytes:
    header = request.getHeader(b"content-type") or b""
    return header.partition(b";")[0].strip().lower()


class Sink:
    """
    A request body's file that keeps nothing: what Twisted's L{Request}
    asks of C{content} besides C{write}, answered as an empty file.
    """

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


class LineBody(Sink):
    """
    The body of a C{POST /publish}, split into lines and published as it
    arrives: a file for L{Request.content} that keeps only the line not
    ended yet.

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
        self._pending: list[bytes] = []
        self._pendingLength = 0
        self._discarding = False
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
        except PublisherError as e:
            return f"{e} (POST /publish?app=APP&proc=PROC&host=HOST)"
        if self._grant is not None and not self._grant.allows(self._topic.app):
            return f"this token may not publish to the app {self._topic.app!r}"
        return None

    def write(self, data: bytes) -> None:
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return
            self._discarding = False
            data = data[newline + 1 :]
        if b"\n" not in data:
            self._pending.append(data)
            self._pendingLength += len(data)
            if self._pendingLength > self._maxLine:
                self._lines([self._takePending()])
                self._discarding = True
            return
        if self._pending:
            data = self._takePending() + data
        complete, _, rest = data.rpartition(b"\n")
        if len(rest) > self._maxLine:
            self._lines([*complete.split(b"\n"), rest])
            self._discarding = True
        else:
            if rest:
                self._pending = [rest]
                self._pendingLength = len(rest)
            self._lines(complete.split(b"\n"))

    def _takePending(self) -> bytes:
        line = b"".join(self._pending)
        self._pending = []
        self._pendingLength = 0
        return line

    def _lines(self, lines: list[bytes]) -> None:
        """
        Publish complete lines (a line longer than C{maxLine} is one whose
        rest is being discarded).
        """
        if not self._ndjson:
            self._textLines(lines)
            return
        batches: dict[Topic, list[Record]] = {}
        size = 0
        for line in lines:
            self._line += 1
            if line.endswith(b"\r"):
                line = line[:-1]
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
        (blank ones skipped, over-long ones cut and marked).
        """
        assert self._topic is not None
        self._line += len(lines)
        maxLine = self._maxLine
        joined = b"\n".join(lines)
        if len(joined) > maxLine and any(len(line) > maxLine for line in lines):
            lines = [
                line if len(line) <= maxLine else line[:maxLine] + _TRUNCATED for line in lines
            ]
            joined = b"\n".join(lines)
        if b"\r" in joined:
            joined = joined.replace(b"\r\n", b"\n").removesuffix(b"\r")
        stamp = self._now()
        records = [(stamp, line) for line in joined.decode("utf-8", "replace").split("\n") if line]
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
        except PublisherError as e:
            self._reject(str(e))
            return None
        if self._grant is not None and not self._grant.allows(topic.app):
            self._reject(f"this token may not publish to the app {topic.app!r}")
            return None
        if "log" not in value:
            self._reject("no 'log'")
            return None
        time = value.get("time")
        stamp = self._stamps(time) if isinstance(time, str) else None
        return topic, (stamp or self._now(), cleanText(value["log"]))

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"line {self._line}: {reason}")

    def finish(self) -> None:
        """
        The body is complete: publish a last line without a newline, and
        close the publications.
        """
        if self._pending:
            self._lines([self._takePending()])
        self._publications.close()

    def close(self) -> None:
        self._publications.close()


class Ingest:
    """
    What the HTTP ingest paths share: the broker, the clock, the bounds.
    """

    def __init__(self, broker: IBroker, clock: IReactorTime, maxLine: int) -> None:
        self.broker = broker
        self.clock = clock
        self.maxLine = maxLine
        self.stamps = StampParser()

    def now(self) -> str:
        return formatEpoch(self.clock.seconds())

    def lineBody(self, request: Request) -> LineBody:
        """
        The body sink of a C{POST /publish}, before its body arrives.
        """
        args = request.args or {}
        query = {
            name: args[name.encode()][0].decode("utf-8", "replace")
            if args.get(name.encode())
            else None
            for name in ("app", "proc", "host")
        }
        return LineBody(
            self.broker,
            self.now,
            self.stamps,
            self.maxLine,
            query,
            peerHost(request.channel.transport),
            _mediaType(request) in _NDJSON,
            grantOf(request),
        )


class PublishResource(Resource):
    """
    C{POST /publish}: see the module docstring.  The body was published
    as it arrived (see L{logio.web.SubscriberRequest}); this answers.
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

    def render(self, request: Request) -> bytes | int:
        if request.method != b"POST":
            request.setHeader(b"allow", b"POST")
            return reply(request, 405, "method not allowed: publish with POST")
        return super().render(request)


def _value(any: object) -> object:
    """
    An OTLP C{AnyValue} (JSON encoding) as a plain value.
    """
    if not isinstance(any, dict):
        return any
    if "stringValue" in any:
        return any["stringValue"]
    if "intValue" in any:
        try:
            return int(any["intValue"])
        except (TypeError, ValueError):
            return any["intValue"]
    for key in ("boolValue", "doubleValue", "bytesValue"):
        if key in any:
            return any[key]
    if "arrayValue" in any:
        return [_value(v) for v in (any["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in any:
        return {
            str(kv.get("key")): _value(kv.get("value"))
            for kv in (any["kvlistValue"] or {}).get("values", [])
            if isinstance(kv, dict)
        }
    return None


def _attributes(resource: object) -> dict[str, object]:
    attributes = resource.get("attributes", []) if isinstance(resource, dict) else []
    return {
        str(kv.get("key")): _value(kv.get("value")) for kv in attributes if isinstance(kv, dict)
    }


def _field(value: object) -> Optional[str]:
    """
    An attribute as a topic field: made valid, or L{None} if absent.
    """
    if value is None or value == "":
        return None
    return acceptable(value if isinstance(value, str) else json.dumps(value))


def _nanos(value: object) -> Optional[float]:
    try:
        nanos = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return nanos / 1e9 if nanos > 0 else None


class OTLPResource(Resource):
    """
    C{POST /v1/logs}: OTLP/HTTP logs; see the module docstring.  The
    answer is an C{ExportLogsServiceResponse}, with C{partialSuccess} when
    some records were rejected.
    """

    isLeaf = True

    def __init__(self, ingest: Ingest) -> None:
        super().__init__()
        self._ingest = ingest

    def render(self, request: Request) -> bytes | int:
        if request.postpath != [b"logs"]:
            return reply(request, 404, "not found: OTLP logs go to /v1/logs")
        if request.method != b"POST":
            request.setHeader(b"allow", b"POST")
            return reply(request, 405, "method not allowed: export logs with POST")
        media = _mediaType(request)
        assert request.content is not None
        data = request.content.read()
        protobuf = media == b"application/x-protobuf"
        try:
            if protobuf:
                export = _fromProtobuf(data)
            elif media in (b"application/json", b""):
                export = json.loads(data)
            else:
                return self._status(request, 415, f"unsupported content type {media!r}")
        except _NoProtobuf as e:
            return self._status(request, 415, str(e))
        except (ValueError, RecursionError) as e:
            return self._status(request, 400, f"not an OTLP logs request: {e}")
        if not isinstance(export, dict):
            return self._status(request, 400, "not an OTLP logs request")
        rejected, reasons = self._publish(export, request, len(data))
        return self._answer(request, rejected, reasons, protobuf)

    def _publish(
        self, export: dict[str, Any], request: Request, size: int
    ) -> tuple[int, list[str]]:
        ingest = self._ingest
        grant = grantOf(request)
        peer = peerHost(request.channel.transport)
        publications = Publications(ingest.broker, "otlp")
        batches: dict[Topic, list[Record]] = {}
        rejected = 0
        reasons: list[str] = []
        for resourceLogs in _list(export.get("resourceLogs")):
            attributes = _attributes(resourceLogs.get("resource"))
            app = _field(attributes.get("service.name")) or OTLP_APP
            if app == RESERVED_APP:
                app = "_" + app
            topic = Topic(
                app,
                _field(attributes.get("service.instance.id", attributes.get("process.pid"))) or "-",
                _field(attributes.get("host.name")) or peer,
            )
            records = [
                record
                for scopeLogs in _list(resourceLogs.get("scopeLogs"))
                for record in _list(scopeLogs.get("logRecords"))
            ]
            if grant is not None and not grant.allows(topic.app):
                rejected += len(records)
                reasons.append(f"this token may not publish to the app {topic.app!r}")
                continue
            batch = batches.setdefault(topic, [])
            for record in records:
                seconds = _nanos(record.get("timeUnixNano")) or _nanos(
                    record.get("observedTimeUnixNano")
                )
                body = _value(record.get("body"))
                text = body if isinstance(body, str) else cleanText(body)
                batch.append((ingest.now() if seconds is None else formatEpoch(seconds), text))
        publications.publish(batches, size)
        publications.close()
        return rejected, reasons

    def _answer(self, request: Request, rejected: int, reasons: list[str], protobuf: bool) -> bytes:
        request.setResponseCode(200)
        if protobuf:
            request.setHeader(b"content-type", b"application/x-protobuf")
            return _protobufResponse(rejected, "; ".join(reasons[:MAX_ERRORS]))
        request.setHeader(b"content-type", b"application/json")
        answer: dict[str, Any] = {}
        if rejected:
            answer["partialSuccess"] = {
                "rejectedLogRecords": str(rejected),
                "errorMessage": "; ".join(reasons[:MAX_ERRORS]),
            }
        return (json.dumps(answer) + "\n").encode()

    def _status(self, request: Request, code: int, message: str) -> bytes:
        """
        An error answer: a C{google.rpc.Status}, in JSON.
        """
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return (json.dumps({"code": 3, "message": message}) + "\n").encode()


def _list(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class _NoProtobuf(Exception):
    """
    OTLP protobuf was sent, and C{opentelemetry-proto} is not installed.
    """


def _fromProtobuf(data: bytes) -> Any:
    """
    Decode an C{ExportLogsServiceRequest} into its JSON form.

    @raise _NoProtobuf: Without C{opentelemetry-proto}.
    @raise ValueError: If C{data} is not one.
    """
    try:
        from google.protobuf.json_format import MessageToDict
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )
    except ImportError:
        raise _NoProtobuf(
            "OTLP protobuf needs the opentelemetry-proto package on the server; "
            "or send JSON (Content-Type: application/json)"
        ) from None
    message = ExportLogsServiceRequest()
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise ValueError(str(e)) from None
    return MessageToDict(message)


def _protobufResponse(rejected: int, message: str) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceResponse,
    )

    response = ExportLogsServiceResponse()
    if rejected:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = message
    return bytes(response.SerializeToString())
