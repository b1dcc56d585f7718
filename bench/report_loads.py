"""The table's rows for the loads users have (L{bench.users}): each logio case beside its
nats-server twin, with the performance issue's targets checked where it sets them."""

from __future__ import annotations

import re
from typing import Any

from .amplified import FIELD, PEAK_TARGET_MB
from .cells import P99_TARGETS_MS, Row, checked_text, percentiles_text, si, verdict
from .scaling import AXES, SERVERS, point_name
from .users import APPS_CASE, FLEET_RATES, LINE_SIZES, fleet_name, size_name, twin

LATER_RUN = re.compile(r"^(latency-\d+)-run(\d+)$")
"""A latency load's second run, or later: its first run's case and its number."""
FLEET_CASES = {fleet_name(rate) for rate in FLEET_RATES}
"""Cases whose targets are the server's CPU % and p99 at or below nats-server's."""
SIZE_CASES = {size_name(size) for size in LINE_SIZES}
LOAD_TWINS = {name: twin("nats", name) for name in (*FLEET_CASES, APPS_CASE, *SIZE_CASES)}
"""Each users case's nats-server twin."""
FIELD_NOTE = f"{FIELD}-char app/proc/host"
P99_BOUND_MS = 5.0
"""A fleet's p99 at most this, where the box allows it (nats-server's p99 does not
exceed it)."""


def owns(name: str) -> bool:
    """Whether this module makes a case's rows."""
    return (
        name in LOAD_TWINS
        or name.startswith(("amplified-", "scaling-"))
        or bool(LATER_RUN.match(name))
    )


def load_rows(name: str, result: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[Row]:
    """A case's rows; for a users case, logio's figure and nats-server's beside it; a
    later run of a latency load has none of its own (L{run_rows} has them all)."""
    if LATER_RUN.match(name):
        return []
    if name.startswith("scaling-"):
        return _scaling_rows(name, result, results)
    if "amplified" in result:
        return _amplified_rows(name, result["amplified"])
    peer = results.get(LOAD_TWINS[name], {})
    if "error" in peer:
        peer = {}
    if name in SIZE_CASES:
        return _size_rows(name, result, peer)
    out: list[Row] = []
    if name == APPS_CASE:
        rate, nats = result["deliveries_per_s_paced"], peer.get("deliveries_per_s_paced")
        out.append(
            _beside(name, "deliveries/s", si(rate), si(nats) if nats else None, _ratio(rate, nats))
        )
    out += _latency_rows(name, result, peer)
    return out


def _beside(
    name: str,
    measure: str,
    ours: str,
    theirs: str | None,
    ratio: str,
    target: str = "",
    ok: str = "",
) -> Row:
    """A row with logio's figure and nats-server's."""
    return (name, measure, ours, "", "", theirs or "", ratio, target, ok)


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}" if ours is not None and theirs else ""


def _latency_rows(name: str, result: dict[str, Any], peer: dict[str, Any]) -> list[Row]:
    """Latency, the server's CPU %, and every line checked, for a paced fleet; a fleet
    of small publishers is targeted at nats-server's CPU % and p99."""
    fleet = name in FLEET_CASES
    lat, peer_lat = result.get("latency"), peer.get("latency")
    out: list[Row] = []
    if lat:
        p99, peer_p99 = lat["p99_ms"], peer_lat["p99_ms"] if peer_lat else None
        target = ok = ""
        if fleet and peer_p99 is not None:
            # At or below nats-server's p99 is within the bound wherever nats-server is.
            target = f"p99 <= nats (so <= {P99_BOUND_MS:g} where nats is)"
            ok = verdict(p99 <= peer_p99)
        figures = percentiles_text(lat)
        theirs = percentiles_text(peer_lat) if peer_lat else None
        out.append(
            _beside(name, "p50/p99/p99.9 ms", figures, theirs, _ratio(p99, peer_p99), target, ok)
        )
    cpu = result.get("cpu", {}).get("server")
    peer_cpu = peer.get("cpu", {}).get("server")
    if cpu is not None:
        target = ok = ""
        if fleet and peer_cpu is not None:
            target, ok = "<= nats", verdict(cpu <= peer_cpu)
        theirs = f"{peer_cpu:.0f}" if peer_cpu is not None else None
        out.append(
            _beside(name, "server CPU %", f"{cpu:.0f}", theirs, _ratio(cpu, peer_cpu), target, ok)
        )
    if "healthy" in result:
        ours, clean = checked_text(result)
        theirs, peer_clean = checked_text(peer) if "healthy" in peer else (None, True)
        out.append(
            _beside(
                name, "lines checked", ours, theirs, "", "all, 0, 0", verdict(clean and peer_clean)
            )
        )
    late = _late_p99(result), _late_p99(peer)
    if late[0] is not None:
        theirs = f"{late[1]:.2f}" if late[1] is not None else None
        note = "publishers' own delay, charged"
        out.append(_beside(name, "lines made late, p99 ms", f"{late[0]:.2f}", theirs, "", note))
    return out


def _late_p99(result: dict[str, Any]) -> float | None:
    """The worst p99 of how late a fleet's workers made their lines, in ms."""
    late = [w["p99"] for w in result.get("publishers_saw", {}).get("late_ms", []) if w]
    return max(late) if late else None


def _size_rows(name: str, result: dict[str, Any], peer: dict[str, Any]) -> list[Row]:
    """Lines/s and MiB/s of lines of one size: logio's (text protocol) and nats-server's."""
    size = result.get("line_bytes") or int(name.rsplit("-", 1)[1])
    rate, nats = result["deliveries_per_s"], peer.get("deliveries_per_s")
    mib = rate * size / 2**20
    peer_mib = nats * size / 2**20 if nats else None
    return [
        _beside(name, "lines/s (text)", si(rate), si(nats) if nats else None, _ratio(rate, nats)),
        _beside(
            name,
            "MiB/s of lines",
            f"{mib:.1f}",
            f"{peer_mib:.1f}" if peer_mib else None,
            _ratio(mib, peer_mib),
        ),
    ]


def _amplified_rows(name: str, figures: dict[str, Any]) -> list[Row]:
    """The amplified case: the server's peak memory against its target, and its CPU
    seconds per MiB of input."""
    peak = figures["peak_mb"]
    per_mib = figures.get("cpu_s_per_input_mib")
    rate = figures.get("input_mib_per_s")
    dropped = figures.get("lines_dropped")
    note = f"{FIELD_NOTE}, {si(dropped)} lines dropped" if dropped is not None else FIELD_NOTE
    return [
        (
            name,
            "peak RSS MB",
            f"{peak:.0f}",
            "",
            "",
            f"< {PEAK_TARGET_MB:g}",
            verdict(peak < PEAK_TARGET_MB),
        ),
        (
            name,
            "CPU s per input MiB",
            f"{per_mib:.2f}" if per_mib is not None else "?",
            "",
            "",
            f"at {rate:.1f} MiB/s in" if rate else "",
            "",
        ),
        (name, "topic, output dropped", "", "", "", note, ""),
    ]


def run_rows(name: str, results: dict[str, dict[str, Any]]) -> list[Row]:
    """After a latency load's first run, every run's p99 (the first included) against
    its target, and whether every run got every line."""
    target = P99_TARGETS_MS.get(name)
    later = sorted(
        (int(match.group(2)), other)
        for other in results
        if (match := LATER_RUN.match(other)) and match.group(1) == name
    )
    if target is None or not later:
        return []
    runs = [results[name], *(results[other] for _, other in later)]
    p99s = [run.get("latency", {}).get("p99_ms") for run in runs]
    figures = " / ".join("error" if p99 is None else f"{p99:.2f}" for p99 in p99s)
    held = all(p99 is not None and p99 <= target for p99 in p99s)
    complete = sum("healthy" in run and checked_text(run)[1] for run in runs)
    return [
        (
            name,
            f"p99 ms, runs 1-{len(runs)}",
            figures,
            "",
            "",
            f"each <= {target:g}",
            verdict(held),
        ),
        (
            name,
            "runs with every line",
            f"{complete}/{len(runs)}",
            "",
            "",
            "all",
            verdict(complete == len(runs)),
        ),
    ]


def _scaling_rows(
    name: str, result: dict[str, Any], results: dict[str, dict[str, Any]]
) -> list[Row]:
    """A scaling point: deliveries/s of logio, redis-server and nats-server side by side,
    in one row (made with the first of them measured), with what each server dropped
    for its subscribers or how many subscribers it cut off."""
    axis, count, kind = result.get("axis"), result.get("count"), name.rsplit("-", 1)[1]
    if axis is None or count is None:
        return []
    cases = {server: point_name(axis, count, server) for server in SERVERS}
    measured = [
        server for server in SERVERS if "error" not in results.get(cases[server], {"error": ""})
    ]
    if not measured or kind != measured[0]:
        return []
    rates: dict[str, float | None] = {}
    notes = []
    for server in SERVERS:
        point = results.get(cases[server], {})
        rates[server] = point.get("deliveries_per_s")
        dropped = max(point.get("dropped") or 0, point.get("server_dropped") or 0)
        if dropped:
            notes.append(f"{server} dropped {si(dropped)}")
        if point.get("closed_subscribers"):
            notes.append(f"{server} cut {point['closed_subscribers']} off")
        if "error" in point:
            notes.append(f"{server}: error")
    ours, redis, nats = rates["logio"], rates["redis"], rates["nats"]

    def cell(rate: float | None) -> str:
        return "" if rate is None else si(rate)

    return [
        (
            name.rsplit("-", 1)[0],
            f"deliveries/s, {count} {AXES[axis] if count > 1 else AXES[axis][:-1]}",
            cell(ours),
            cell(redis),
            _ratio(ours, redis),
            cell(nats),
            _ratio(ours, nats),
            "; ".join(notes),
            "",
        )
    ]
