# -*- test-case-name: tests.test_web -*-
"""
The reserved paths of the subscriber port that report on the server:
C{/healthz}, C{/metrics} (Prometheus text) and C{/topics} (JSON).
"""

from __future__ import annotations

import json
from typing import Iterator, Optional

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Request

from logio.auth import grantOf
from logio.http import PLAIN_TEXT
from logio.interfaces import IBroker


class _Report(Resource):
    """
    A report: the route table lets in only C{GET} and C{HEAD} of its path.
    """

    isLeaf = True
    contentType = PLAIN_TEXT

    def render(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.contentType)
        request.setHeader(b"cache-control", b"no-cache")
        return self.report(request)

    def report(self, request: Request) -> bytes:
        raise NotImplementedError


class HealthResource(_Report):
    """
    C{/healthz}: 200 C{ok} while the server runs; a cluster node adds the
    state of its link (still C{ok}: it serves its own publishers and
    subscribers alone).
    """

    def __init__(self, broker: Optional[IBroker] = None) -> None:
        super().__init__()
        self._broker = broker

    def report(self, request: Request) -> bytes:
        relay = None if self._broker is None else self._broker.relay
        if relay is None:
            return b"ok\n"
        return f"ok\ncluster: {relay.state()}\n".encode("utf-8", "replace")


class _Collector:
    """
    Read the broker's counters when Prometheus scrapes (the hot paths only
    add to plain integers).
    """

    def __init__(self, broker: IBroker) -> None:
        self._broker = broker

    def collect(self) -> Iterator[Metric]:
        broker = self._broker
        stats = broker.stats
        labelled = [
            ("logio_records_in", "Records published, by wire protocol.", "protocol", stats.recordsIn),
            ("logio_lines_out", "Output lines handed to subscribers, by format.", "format", stats.linesOut),
            ("logio_lines_dropped", "Output lines dropped for slow subscribers, by format.", "format", stats.linesDropped),
            ("logio_refusals", "Connections and requests refused, by side.", "side", stats.refusals),
        ]  # fmt: skip
        for name, documentation, label, counts in labelled:
            family = CounterMetricFamily(name, documentation, labels=[label])
            for value, count in sorted(counts.items()):
                family.add_metric([value], count)
            yield family
        yield CounterMetricFamily(
            "logio_bytes_out", "Bytes written to subscribers.", value=stats.bytesOut
        )
        yield CounterMetricFamily(
            "logio_records_unsearched",
            "Records not searched for a subscriber's log= pattern: the patterns together "
            "took all the time a batch may have (counted once per subscriber).",
            value=stats.recordsUnsearched,
        )
        history = broker.history
        gauges = [
            ("logio_publishers", "Publisher connections open.", stats.publishers),
            ("logio_subscribers", "Subscribers streaming live.", broker.subscriberCount()),
            ("logio_history_records", "Records held in history.", history.records),
            ("logio_history_bytes", "Bytes held in history (text plus overhead).", history.bytes),
        ]
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(name, documentation, value=value)
        extra = list(history.metrics())
        if broker.relay is not None:
            extra.extend(broker.relay.metrics())
        for kind, name, documentation, value in extra:
            if kind == "gauge":
                yield GaugeMetricFamily(name, documentation, value=value)
            else:
                yield CounterMetricFamily(name, documentation, value=value)


class MetricsResource(_Report):
    """
    C{/metrics}: the server's counters in Prometheus's text format.
    """

    contentType = CONTENT_TYPE_LATEST.encode("ascii")

    def __init__(self, broker: IBroker) -> None:
        super().__init__()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(broker))

    def report(self, request: Request) -> bytes:
        return generate_latest(self._registry)


class TopicsResource(_Report):
    """
    C{/topics}: a JSON array with one object per topic the server knows
    (publishing now, or in history): C{app}, C{proc}, C{host}, C{records}
    published, the C{last} record's time, C{publishers} connected.  On a
    server with C{--auth}, only the topics of the apps the token allows.
    """

    contentType = b"application/json"

    def __init__(self, broker: IBroker) -> None:
        super().__init__()
        self._broker = broker

    def report(self, request: Request) -> bytes:
        grant = grantOf(request)
        topics = sorted(
            (
                info
                for info in self._broker.topics()
                if grant is None or grant.allows(info.topic.app)
            ),
            key=lambda info: (info.topic.app, info.topic.proc, info.topic.host),
        )
        body = [
            {
                "app": info.topic.app,
                "proc": info.topic.proc,
                "host": info.topic.host,
                "records": info.records,
                "last": info.last + "Z",
                "publishers": info.publishers,
            }
            for info in topics
        ]
        return (json.dumps(body, ensure_ascii=False, indent=1) + "\n").encode("utf-8", "replace")
