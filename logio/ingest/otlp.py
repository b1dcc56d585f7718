# -*- test-case-name: tests.test_ingest -*-
"""
C{POST /v1/logs}: OpenTelemetry logs over OTLP/HTTP, JSON (or protobuf,
where C{opentelemetry-proto} is installed).  App = the resource's
C{service.name}, proc = C{service.instance.id} or C{process.pid}, host =
C{host.name}, time = C{timeUnixNano} (or C{observedTimeUnixNano}), log = the
body's string (other bodies as compact JSON), level = C{severityNumber} (or
C{severityText}).  A record with C{exception.*} attributes, as the SDKs'
C{logger.exception(...)} sends them, gets the exception as its further
lines: the stack trace if there is one, else C{<type>: <message>}.

A body of either kind is walked down to its log records, which are decoded
and published a piece at a time: a body of many records holds the server
for no longer than a slice at a time, and memory for little more than its
own bytes.  A body that turns out malformed part of the way is answered
with a 400 that says how many records before the fault were published.

On a server with C{--auth} it needs a token that may publish (see
L{logio.web.gate}); the records of an app the token does not allow are
rejected.
"""

from __future__ import annotations

import json
import re
from time import perf_counter
from typing import Any, Callable, Iterator, Optional, Union

from attrs import Factory, define
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from logio.auth import Denied, grantOf
from logio.fields import RESERVED_APP, acceptable
from logio.http import mediaType
from logio.ingest.base import Publications, cleanText
from logio.interfaces import IBroker
from logio.levels import fromOTLP
from logio.net import peerHost
from logio.topic import Topic, formatEpoch

#: A decoded log record: its time (or L{None}), text and level (or L{None}).
_Decoded = tuple[Optional[float], str, Optional[str]]

#: How many reasons for rejected records an answer lists.
MAX_ERRORS = 10
#: The app of OpenTelemetry records whose resource has no C{service.name}.
OTLP_APP = "unknown_service"
#: How many records are decoded and published at a time.
PIECE = 256
#: How long a body is worked on at once before the rest waits for later
#: reactor turns.
SLICE = 0.01


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

    A body is decoded and published in pieces of at most L{PIECE} records:
    as much as fits in L{SLICE} seconds at once, the rest in later reactor
    turns, so a large body never holds the server for long.
    """

    isLeaf = True

    def __init__(self, broker: IBroker, clock: IReactorTime) -> None:
        super().__init__()
        self._broker = broker
        self._clock = clock
        self._cooperator = Cooperator(
            terminationPredicateFactory=_slice, scheduler=lambda work: clock.callLater(0, work)
        )

    def render(self, request: Request) -> bytes | int:
        media = mediaType(request)
        protobuf = media == b"application/x-protobuf"
        if not (protobuf or media in (b"application/json", b"")):
            return self._status(request, 415, f"unsupported content type {media!r}")
        assert request.content is not None
        data = request.content.read()
        try:
            blocks = _protobufBlocks(data) if protobuf else _jsonBlocks(data)
        except _NoProtobuf as e:
            return self._status(request, 415, str(e))
        outcome = _Outcome()
        work = self._publishing(request, blocks, outcome)
        began = perf_counter()
        for _ in work:
            if perf_counter() - began > SLICE:
                break
        else:
            return self._answer(request, outcome, protobuf)
        task = self._cooperator.cooperate(work)

        def done(result: object) -> None:
            if not request.finished and request.channel is not None:
                request.write(self._answer(request, outcome, protobuf))
                request.finish()

        task.whenDone().addCallbacks(done, lambda reason: None)
        request.notifyFinish().addErrback(lambda reason: task.stop())
        return NOT_DONE_YET

    def _publishing(
        self, request: Request, blocks: Iterator[_Block], outcome: _Outcome
    ) -> Iterator[None]:
        """
        Publish the records of C{blocks}, a piece at a time, into C{outcome}.
        """
        grant = grantOf(request)
        peer = peerHost(request.channel.transport)
        now = formatEpoch(self._clock.seconds())
        publications = Publications(self._broker, "otlp")
        topic = Topic(OTLP_APP, "-", peer)
        denied: Optional[str] = None
        try:
            for block in blocks:
                if isinstance(block, dict):
                    topic = _topic(block, peer)
                    denied = None
                    try:
                        if grant is not None:
                            grant.check(topic.app)
                    except Denied as e:
                        denied = str(e)
                        outcome.reasons.append(denied)
                elif denied is not None:
                    outcome.rejected += len(block)
                else:
                    records = [
                        (now if seconds is None else formatEpoch(seconds), text, level)
                        for seconds, text, level in block
                    ]
                    publications.publish({topic: records}, sum(len(r[1]) for r in records))
                    outcome.published += len(records)
                yield None
        except (ValueError, RecursionError) as e:
            outcome.error = f"not an OTLP logs request: {e}"
        finally:
            publications.close()

    def _answer(self, request: Request, outcome: _Outcome, protobuf: bool) -> bytes:
        if outcome.error is not None:
            published = outcome.published
            return self._status(
                request,
                400,
                outcome.error
                + (f" ({published} records before it were published)" if published else ""),
            )
        request.setResponseCode(200)
        reasons = "; ".join(outcome.reasons[:MAX_ERRORS])
        if protobuf:
            request.setHeader(b"content-type", b"application/x-protobuf")
            return _protobufResponse(outcome.rejected, reasons)
        request.setHeader(b"content-type", b"application/json")
        answer: dict[str, Any] = {}
        if outcome.rejected:
            answer["partialSuccess"] = {
                "rejectedLogRecords": str(outcome.rejected),
                "errorMessage": reasons,
            }
        return (json.dumps(answer) + "\n").encode()

    def _status(self, request: Request, code: int, message: str) -> bytes:
        """
        An error answer: a C{google.rpc.Status}, in JSON.
        """
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return (json.dumps({"code": 3, "message": message}) + "\n").encode()


def _slice() -> Callable[[], bool]:
    """
    Whether the slice of work that starts now is over.
    """
    end = perf_counter() + SLICE
    return lambda: perf_counter() >= end


@define
class _Outcome:
    """
    What publishing a body came to.

    @ivar error: Why the rest of the body could not be read, if so.
    """

    published: int = 0
    rejected: int = 0
    reasons: list[str] = Factory(list)
    error: Optional[str] = None


def _topic(attributes: dict[str, object], peer: str) -> Topic:
    """
    The topic of a resource's records, from its attributes.
    """
    app = _field(attributes.get("service.name")) or OTLP_APP
    if app == RESERVED_APP:
        app = "_" + app
    return Topic(
        app,
        _field(attributes.get("service.instance.id", attributes.get("process.pid"))) or "-",
        _field(attributes.get("host.name")) or peer,
    )


def _record(record: dict[str, Any]) -> _Decoded:
    """
    A log record in JSON form as its time (or L{None}), text and level.
    """
    seconds = _nanos(record.get("timeUnixNano")) or _nanos(record.get("observedTimeUnixNano"))
    body = _value(record.get("body"))
    text = body if isinstance(body, str) else cleanText(body)
    attributes = record.get("attributes")
    if isinstance(attributes, list) and attributes:
        text = _withException(text, _attributes(record))
    number = record.get("severityNumber")
    if isinstance(number, str):
        # The enum's name, as protobuf's JSON mapping may write it.
        number = _SEVERITY_NAMES.get(number, number)
    return seconds, text, fromOTLP(number, record.get("severityText"))


#: C{SEVERITY_NUMBER_WARN2} and the like, by their numbers.
_SEVERITY_NAMES = {
    f"SEVERITY_NUMBER_{name}{'' if step == 1 else step}": 1 + 4 * rank + step - 1
    for rank, name in enumerate(("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"))
    for step in range(1, 5)
}


def _withException(text: str, attributes: dict[str, object]) -> str:
    """
    C{text} with the exception its record's attributes describe, if any, as
    further lines: the stack trace (which ends with the type and message),
    else the type and message.
    """
    trace = attributes.get("exception.stacktrace")
    if isinstance(trace, str) and trace.strip():
        return cleanText(f"{text}\n{trace.rstrip()}")
    kind, message = attributes.get("exception.type"), attributes.get("exception.message")
    if kind is None and message is None:
        return text
    described = ": ".join(str(part) for part in (kind, message) if part is not None)
    return cleanText(f"{text}\n{described}")


_SPACE = re.compile(r"[ \t\n\r]*")


class _Cursor:
    """
    Walk a JSON text one value at a time: the objects and arrays on the way
    to the records are entered, everything else is decoded whole.  A value
    of the wrong kind where an object or an array is expected is skipped,
    as an absent one.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._decode = json.JSONDecoder().raw_decode

    def _skip(self) -> None:
        found = _SPACE.match(self.text, self.pos)
        assert found is not None
        self.pos = found.end()

    def _take(self, char: str) -> bool:
        self._skip()
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def value(self) -> Any:
        """
        Decode the value here, whole.
        """
        self._skip()
        value, self.pos = self._decode(self.text, self.pos)
        return value

    def members(self) -> Iterator[str]:
        """
        Enter the object here: yield each key, with the cursor at its
        value, which the caller must read before asking for the next.
        """
        if not self._take("{"):
            self.value()
            return
        if self._take("}"):
            return
        while True:
            key = self.value()
            if not (isinstance(key, str) and self._take(":")):
                raise ValueError(f"expected a key and ':' at character {self.pos}")
            yield key
            if self._take("}"):
                return
            if not self._take(","):
                raise ValueError(f"expected ',' or '}}' at character {self.pos}")

    def items(self) -> Iterator[None]:
        """
        Enter the array here: yield once for each element, with the cursor
        at it, which the caller must read before asking for the next.
        """
        if not self._take("["):
            self.value()
            return
        if self._take("]"):
            return
        while True:
            yield None
            if self._take("]"):
                return
            if not self._take(","):
                raise ValueError(f"expected ',' or ']' at character {self.pos}")

    def end(self) -> None:
        """
        Check that nothing but whitespace follows.
        """
        self._skip()
        if self.pos != len(self.text):
            raise ValueError(f"extra data at character {self.pos}")


#: What the decoders hand over: a resource's attributes (the records after
#: it are its own), or a piece of records.
_Block = Union[dict[str, object], list[_Decoded]]


def _jsonBlocks(data: bytes) -> Iterator[_Block]:
    """
    The blocks of an OTLP JSON export, decoded a piece at a time.
    """
    text = data.decode("utf-8")
    cursor = _Cursor(text)
    if not text.lstrip(" \t\n\r").startswith("{"):
        raise ValueError("not a JSON object")
    for key in cursor.members():
        if key != "resourceLogs":
            cursor.value()
            continue
        for _ in cursor.items():
            yield from _jsonResource(cursor)
    cursor.end()


def _jsonResource(cursor: _Cursor) -> Iterator[_Block]:
    """
    The blocks of one C{resourceLogs} object; its records wait for its
    resource if that comes after them.
    """
    resource: Optional[dict[str, object]] = None
    waiting: list[_Block] = []
    for key in cursor.members():
        if key == "resource":
            resource = _attributes(cursor.value())
            yield resource
            yield from waiting
            waiting = []
        elif key == "scopeLogs":
            for _ in cursor.items():
                for scopeKey in cursor.members():
                    if scopeKey != "logRecords":
                        cursor.value()
                        continue
                    piece: list[_Decoded] = []
                    for _ in cursor.items():
                        record = cursor.value()
                        if isinstance(record, dict):
                            piece.append(_record(record))
                        if len(piece) >= PIECE:
                            if resource is None:
                                waiting.append(piece)
                            else:
                                yield piece
                            piece = []
                    if piece:
                        if resource is None:
                            waiting.append(piece)
                        else:
                            yield piece
        else:
            cursor.value()
    if resource is None:
        yield {}
        yield from waiting


class _NoProtobuf(Exception):
    """
    OTLP protobuf was sent, and C{opentelemetry-proto} is not installed.
    """


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """
    The protobuf varint at C{pos}, and where it ends.
    """
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than ten bytes")


def _fields(data: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """
    The fields of the protobuf message in C{data[pos:end]}: each one's
    number, where it starts, and where its value (a length-delimited one's
    contents) starts and ends.
    """
    try:
        while pos < end:
            field = pos
            key, pos = _varint(data, pos)
            kind = key & 7
            if kind == 2:
                length, pos = _varint(data, pos)
                start, pos = pos, pos + length
            elif kind == 0:
                start = pos
                _, pos = _varint(data, pos)
            elif kind in (1, 5):
                start, pos = pos, pos + (8 if kind == 1 else 4)
            else:
                raise ValueError(f"wire type {kind} at byte {pos}")
            if pos > end:
                raise ValueError("a field longer than its message")
            yield key >> 3, field, start, pos
    except IndexError:
        raise ValueError("the message ends inside a field") from None


def _protobufBlocks(data: bytes) -> Iterator[_Block]:
    """
    The blocks of an OTLP protobuf C{ExportLogsServiceRequest}, walked
    field by field down to the log records, which are decoded a piece at a
    time.

    @raise _NoProtobuf: Without C{opentelemetry-proto} (at once).
    """
    try:
        from google.protobuf.json_format import MessageToDict
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.logs.v1.logs_pb2 import ScopeLogs
        from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
    except ImportError:
        raise _NoProtobuf(
            "OTLP protobuf needs the opentelemetry-proto package on the server; "
            "or send JSON (Content-Type: application/json)"
        ) from None

    def records(start: int, end: int) -> list[_Decoded]:
        try:
            scope = ScopeLogs.FromString(data[start:end])
        except DecodeError as e:
            raise ValueError(str(e)) from None
        piece = []
        for record in scope.log_records:
            nanos = record.time_unix_nano or record.observed_time_unix_nano
            body = record.body
            kind = body.WhichOneof("value")
            if kind == "string_value":
                text = body.string_value
            else:
                text = cleanText(None if kind is None else _value(MessageToDict(body)))
            if record.attributes:
                text = _withException(
                    text, {kv.key: kv.value.string_value for kv in record.attributes}
                )
            level = fromOTLP(record.severity_number, record.severity_text)
            piece.append((nanos / 1e9 if nanos else None, text, level))
        return piece

    def walk() -> Iterator[_Block]:
        for number, _, start, end in _fields(data, 0, len(data)):
            if number != 1:
                continue
            resource = b""
            scopes = []
            for field, _, low, high in _fields(data, start, end):
                if field == 1:
                    resource = data[low:high]
                elif field == 2:
                    scopes.append((low, high))
            try:
                yield _attributes(MessageToDict(ProtoResource.FromString(resource)))
            except DecodeError as e:
                raise ValueError(str(e)) from None
            for low, high in scopes:
                # Any run of a scope's fields is a scope of its own: read
                # its records PIECE at a time.
                first = last = count = 0
                for field, fieldStart, _, fieldEnd in _fields(data, low, high):
                    if field != 2:
                        continue
                    if not count:
                        first = fieldStart
                    last = fieldEnd
                    count += 1
                    if count >= PIECE:
                        yield records(first, last)
                        count = 0
                if count:
                    yield records(first, last)

    return walk()


def _protobufResponse(rejected: int, message: str) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceResponse,
    )

    response = ExportLogsServiceResponse()
    if rejected:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = message
    return bytes(response.SerializeToString())
