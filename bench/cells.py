"""The cells of the benchmark's table: its columns, and how figures and verdicts read."""

from __future__ import annotations

from typing import Any

Row = tuple[str, ...]
"""A table row: case, measure, logio, redis, ratio, target, verdict; or, for a case with
nats-server beside it, case, measure, logio, redis, ratio, nats, ratio, target, verdict."""
HEADER: Row = ("case", "measure", "logio", "redis", "x redis", "nats", "x nats", "target", "")
P99_TARGETS_MS = {"latency-10": 2.0, "latency-100": 10.0}
"""The latency loads' p99 targets, in every run."""


def wide(row: Row) -> Row:
    """A row in the table's columns (a row without nats gets its columns empty)."""
    return row if len(row) == len(HEADER) else (*row[:5], "", "", *row[5:])


def si(value: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def verdict(ok: bool | None) -> str:
    """How a checked target reads in the table."""
    return "" if ok is None else ("ok" if ok else "MISSED")


def percentiles_text(latency: dict[str, float]) -> str:
    """p50 / p99 / p99.9 in ms."""
    return f"{latency['p50_ms']:.2f} / {latency['p99_ms']:.2f} / {latency['p999_ms']:.2f}"


def checked_text(result: dict[str, Any]) -> tuple[str, bool]:
    """Whether every healthy subscriber of a paced load got every line published to it,
    in order: the cell, and whether it is so."""
    complete = f"{result['healthy_complete']}/{result['healthy']}"
    # What the server dropped for a subscriber it said so of: missing, but accounted.
    dropped = result.get("healthy_dropped", 0)
    lost = result["missing"] - dropped
    text = f"{complete} complete, {lost} lost, {result['reordered']} reord."
    if dropped:
        text = f"{complete} complete, {si(dropped)} dropped with notices, {lost} lost"
    clean = result["missing"] == 0 and result["reordered"] == 0 and result["unparsed"] == 0
    return text, clean and result["healthy_complete"] == result["healthy"]
