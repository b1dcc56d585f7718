"""
What real publishers send: seed JSON records and topics as the Go client
writes them, and an OTLP/HTTP JSON export as the OpenTelemetry Collector
sends it.
"""

from __future__ import annotations

import json
from typing import Any


def record(raw: str, time: str = "2016-12-06T17:14:21.448123-05:00") -> bytes:
    """
    One seed JSON record as the Go client writes it.
    """
    return json.dumps({"time": time, "raw": raw}, separators=(",", ":")).encode()


def topic(app: str, proc: str, host: str = "h") -> bytes:
    """
    A seed JSON topic as the Go client writes it.
    """
    return json.dumps({"app": app, "proc": proc, "host": host}, separators=(",", ":")).encode()


#: An OTLP/HTTP JSON export as the OpenTelemetry Collector's otlphttp
#: exporter sends it (int64 values as strings, attributes as key/value lists).
COLLECTOR_EXPORT: dict[str, Any] = {
    "resourceLogs": [
        {
            "resource": {
                "attributes": [
                    {"key": "service.name", "value": {"stringValue": "checkout"}},
                    {"key": "service.instance.id", "value": {"stringValue": "i-42"}},
                    {"key": "host.name", "value": {"stringValue": "node-1"}},
                ]
            },
            "scopeLogs": [
                {
                    "scope": {"name": "checkout.logger", "version": "1.0"},
                    "logRecords": [
                        {
                            "timeUnixNano": "1544712660300000000",
                            "observedTimeUnixNano": "1544712660300000000",
                            "severityNumber": 10,
                            "severityText": "Information",
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "body": {"stringValue": "order 17 paid"},
                            "attributes": [{"key": "order", "value": {"intValue": "17"}}],
                        },
                        {
                            "timeUnixNano": "0",
                            "observedTimeUnixNano": "1544712661000000000",
                            "body": {
                                "kvlistValue": {
                                    "values": [
                                        {"key": "event", "value": {"stringValue": "refund"}},
                                        {"key": "amount", "value": {"doubleValue": 9.5}},
                                    ]
                                }
                            },
                        },
                    ],
                }
            ],
        },
        {
            "resource": {"attributes": [{"key": "process.pid", "value": {"intValue": "4711"}}]},
            "scopeLogs": [{"logRecords": [{"body": {"stringValue": "no service"}}]}],
        },
    ]
}
