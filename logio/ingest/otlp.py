# -*- test-case-name: tests.test_ingest -*-
"""
C{POST /v1/logs}: OpenTelemetry logs over OTLP/HTTP, JSON (or protobuf,
where C{opentelemetry-proto} is installed).  App = the resource's
C{service.name}, proc = C{service.instance.id} or C{process.pid}, host =
C{host.name}, time = C{timeUnixNano} (or C{observedTimeUnixNano}), log = the
body's string (other bodies as compact JSON).

On a server with C{--auth} it needs a token that may publish (see
L{logio.web.gate}); the records of an app the token does not allow are
rejected.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request

from logio.auth import Denied, grantOf
from logio.fields import RESERVED_APP, acceptable
from logio.http import mediaType
from logio.ingest.base import Publications, cleanText
from logio.interfaces import IBroker
from logio.net import peerHost
from logio.topic import Record, Topic, formatEpoch

#: How many reasons for rejected records an answer lists.
MAX_ERRORS = 10
#: The app of OpenTelemetry records whose resource has no C{service.name}.
OTLP_APP = "unknown_service"


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

    def __init__(self, broker: IBroker, clock: IReactorTime) -> None:
        super().__init__()
        self._broker = broker
        self._clock = clock

    def render(self, request: Request) -> bytes:
        media = mediaType(request)
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
        grant = grantOf(request)
        peer = peerHost(request.channel.transport)
        now = formatEpoch(self._clock.seconds())
        publications = Publications(self._broker, "otlp")
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
            try:
                if grant is not None:
                    grant.check(topic.app)
            except Denied as e:
                rejected += len(records)
                reasons.append(str(e))
                continue
            batch = batches.setdefault(topic, [])
            for record in records:
                seconds = _nanos(record.get("timeUnixNano")) or _nanos(
                    record.get("observedTimeUnixNano")
                )
                body = _value(record.get("body"))
                text = body if isinstance(body, str) else cleanText(body)
                batch.append((now if seconds is None else formatEpoch(seconds), text))
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
