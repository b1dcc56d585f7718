"""
Prometheus text, as C{/metrics} serves it, parsed by Prometheus's own parser.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

#: A metric sample's name and sorted labels.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def parseMetrics(text: str) -> dict[SampleKey, float]:
    """
    Prometheus text, parsed by Prometheus's own parser: each sample's value
    by its name and sorted labels.
    """
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
