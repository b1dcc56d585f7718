"""Turning results into a table and a JSON file, with the targets of the core server issue
and the performance issue checked where the run measured them (the chart: L{bench.charts})."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .cells import (
    HEADER,
    P99_TARGETS_MS,
    Row,
    checked_text,
    percentiles_text,
    si,
    verdict,
    wide,
)
from .report_loads import LOAD_TWINS, load_rows, owns, run_rows

PEERS = {
    "ingest-seed-1": "redis-ingest-1",
    "ingest-text-1": "redis-ingest-1",
    "ingest-seed-10": "redis-ingest-10",
    "ingest-text-10": "redis-ingest-10",
    "fanout-10": "redis-fanout-10",
    "fanout-100": "redis-fanout-100",
    "fanout-100-filtered": "redis-fanout-100-filtered",
}
NATS_PEERS = {case: peer.replace("redis-", "nats-", 1) for case, peer in PEERS.items()}
"""The same loads through nats-server."""
NATS_TARGETS = {"fanout-10": 1.2, "fanout-100": 1.2}
"""Fan-out cases whose target is a multiple of nats-server's deliveries/s in the run."""
THROUGHPUT_TARGETS = {
    "ingest-seed-1": 500e3,
    "ingest-text-1": 1e6,
    "ingest-seed-10": 3e6,
    "ingest-text-10": 3e6,
    "fanout-10": 5e6,
}
RELATIVE_TARGETS = {
    "ingest-syslog-1": ("ingest-text-1", 0.5),
    "store-ingest-seed-1": ("ingest-seed-1", 0.8),
    "store-ingest-text-1": ("ingest-text-1", 0.8),
}
"""A case's target as a share of another case of the same run: syslog ingest at least
half the text protocol's lines/s; ingest with ``--store`` at least 80 % of memory only."""
IDLE_TARGET_KIB = 16.0
STALL_EXTRA_TARGET_KB = 4096
"""A stalled subscriber may add at most its byte bound (--buffer-bytes, 4 MiB)."""
CLUSTER_SPEEDUP = 1.4
"""Two nodes sharing their ports: at least this many times one node's lines/s."""
CLUSTER_LATENCY_EXTRA_MS = 1.0
"""Published on one node, read on another: p99 at most the plain server's plus this."""
RATE_KEYS = {
    "records_in": "published",
    "cluster_records_out": "relayed",
    "cluster_records_in": "read back",
    "cluster_records_unrelayed": "alone",
}
"""A cluster node's figures in a throughput window, per second, as the table names them:
records its publishers sent, that it appended to the stream, that it read from the
stream and delivered, and that it delivered alone (not relayed)."""
CLUSTER_BASES = {"1node": "plain", "2nodes": "1node"}
"""A cluster throughput case's ratio is to the case of the same load it names."""

NATS_PEERS.update(LOAD_TWINS)


def rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    """One table row per figure measured."""
    out: list[Row] = []
    for name, result in results.items():
        if _has_logio_twin(name, results):
            continue
        if "error" in result:
            out.append((name, "error", result["error"].splitlines()[0][:60], "", "", "", "FAILED"))
            continue
        if owns(name):
            out += load_rows(name, result, results)
            continue
        out += _case_rows(name, result, results)
        out += run_rows(name, results)
    return out


def _has_logio_twin(name: str, results: dict[str, dict[str, Any]]) -> bool:
    """Whether ``name`` is a peer's case whose figure shows beside logio's."""
    peers = {**PEERS, **NATS_PEERS}
    return any(peer == name and case in results for case, peer in peers.items())


def _case_rows(name: str, result: dict[str, Any], results: dict[str, dict[str, Any]]) -> list[Row]:
    out: list[Row] = []
    if name.startswith("cluster-") and "deliveries_per_s" in result:
        return _cluster_blast_rows(name, result, results)
    if name.startswith("cluster-cost"):
        return _cluster_cost_rows(name, result, results)
    if "deliveries_per_s" in result:
        rate = result["deliveries_per_s"]
        what = "lines/s" if result.get("subscribers") == 1 else "deliveries/s"
        peer = results.get(PEERS.get(name, ""), {}).get("deliveries_per_s")
        nats = results.get(NATS_PEERS.get(name, ""), {}).get("deliveries_per_s")
        target = THROUGHPUT_TARGETS.get(name)
        relative = ""
        if name in RELATIVE_TARGETS:
            other, share = RELATIVE_TARGETS[name]
            base = results.get(other, {}).get("deliveries_per_s")
            if base:
                target = share * base
                relative = f" ({share:.0%} of {other})"
        checks = []
        if target:
            checks.append(rate >= target)
        if peer:
            checks.append(rate > peer)
        over_nats = NATS_TARGETS.get(name) if nats else None
        if over_nats and nats:
            checks.append(rate >= over_nats * nats)
        target_text = " & ".join(
            filter(
                None,
                [
                    f">= {si(target)}{relative}" if target else "",
                    "> redis" if peer else "",
                    f">= {over_nats:g}x nats" if over_nats else "",
                ],
            )
        )
        if name.startswith("redis-"):
            out.append((name, what, "", si(rate), "", "", ""))
            return out
        if name.startswith("nats-"):
            out.append((name, what, "", "", "", si(rate), "", "", ""))
            return out
        out.append(
            (
                name,
                what,
                si(rate),
                si(peer) if peer else "",
                f"{rate / peer:.2f}" if peer else "",
                si(nats) if nats else "",
                f"{rate / nats:.2f}" if nats else "",
                target_text,
                verdict(all(checks) if checks else None),
            )
        )
        if result.get("dropped"):
            sent = f"{si(result['published_per_s'])} sent/s, {si(result['dropped'])} dropped"
            out.append((name, "server dropped", sent, "", "", "0", "note"))
        if result.get("disk_bytes_per_record"):
            stored = f"{result['disk_bytes_per_record']:.0f} ({si(result['stored'])} stored)"
            out.append((name, "disk bytes per record", stored, "", "", "", "note"))
    if "search_records_per_s" in result:
        rate = result["search_records_per_s"]
        stored = f"{si(result['stored'])} stored"
        out.append(
            (name, "log= search, records/s", si(rate), "", "", ">= 1M", verdict(rate >= 1e6))
        )
        out.append(
            (name, "since=5m: ms to first", f"{result['first_result_ms']:.0f}", "", "", "", stored)
        )
        out.append(
            (name, "restart: s to serving", f"{result['restart_s']:.2f}", "", "", "", stored)
        )
        per = result.get("disk_bytes_per_record")
        out.append((name, "disk bytes per record", f"{per:.0f}" if per else "", "", "", "", "note"))
    if "latency" in result:
        lat = result["latency"]
        figures = percentiles_text(lat)
        target_ms = P99_TARGETS_MS.get(name)
        ok = lat["p99_ms"] <= target_ms if target_ms else None
        target_text = f"p99 <= {target_ms:g}" if target_ms else ""
        if name.startswith("stall-") and "latency-10" in results:
            base = results["latency-10"].get("latency", {}).get("p99_ms", math.nan)
            allowed = max(base * 1.1, base + 0.5)
            ok = lat["p99_ms"] <= allowed
            target_text = f"p99 <= {allowed:.2f} (no stall {base:.2f})"
        plain = name.rsplit("-", 1)[0] + "-plain"
        if name.startswith("cluster-") and name != plain and plain in results:
            base = results[plain].get("latency", {}).get("p99_ms", math.nan)
            allowed = base + CLUSTER_LATENCY_EXTRA_MS
            ok = lat["p99_ms"] <= allowed if name.endswith("-cross") else None
            target_text = f"p99 <= {allowed:.2f} (plain {base:.2f} + 1)"
        out.append((name, "p50/p99/p99.9 ms", figures, "", "", target_text, verdict(ok)))
        loss, clean = checked_text(result)
        out.append((name, "healthy subscribers", loss, "", "", "all, 0, 0", verdict(clean)))
        if "cpu" in result:
            out.append(_cpu_row(name, result["cpu"]))
        if "redis" in result:
            out.append(_stream_row(name, result["redis"]))
        out += _link_rows(name, result)
    if name.startswith("stall-") and "memory" in result:
        growth = result["memory"]["growth_kb"]
        base = results.get("latency-10", {}).get("memory", {}).get("growth_kb")
        extra = growth - base if base is not None else growth
        out.append(
            (
                name,
                "server RSS growth",
                f"{growth / 1024:.1f} MiB",
                "",
                "",
                f"+{extra / 1024:.1f} MiB over no stall <= {STALL_EXTRA_TARGET_KB // 1024} MiB",
                verdict(extra <= STALL_EXTRA_TARGET_KB),
            )
        )
    if "idle_publishers" in result:
        idle = result["idle_publishers"]
        per = idle["per_publisher_kib"]
        out.append(
            (
                name,
                "KiB per idle publisher",
                f"{per:.2f}",
                "",
                "",
                f"<= {IDLE_TARGET_KIB:g}",
                verdict(per <= IDLE_TARGET_KIB),
            )
        )
        out.append(
            (
                name,
                "all sent their probe line",
                f"{idle['probes']:.0f}/{idle['count']}",
                "",
                "",
                "all",
                verdict(idle["probes"] >= idle["count"]),
            )
        )
    if "idle" in result:
        idle = result["idle"]
        per = idle["per_subscriber_kib"]
        out.append(
            (
                name,
                "KiB per idle subscriber",
                f"{per:.2f}",
                "",
                "",
                f"<= {IDLE_TARGET_KIB:g}",
                verdict(per <= IDLE_TARGET_KIB),
            )
        )
        live = result["healthy_complete"] == result["healthy"]
        out.append(
            (
                name,
                "all got the probe lines",
                f"{result['healthy_complete']}/{result['healthy']}",
                "",
                "",
                "all",
                verdict(live),
            )
        )
    for slow in result.get("slow", []):
        total = slow["lines"] + slow["dropped"]
        exact = total == result["published"] and slow["missing"] == slow["dropped"]
        exact = exact and slow["reordered"] == 0
        out.append(
            (
                name,
                "slow: recv + dropped",
                f"{slow['lines']} + {slow['dropped']} = {total}",
                "",
                "",
                f"= {result['published']} published",
                verdict(exact),
            )
        )
    if name == "soak":
        out.append((name, "rate lines/s", si(result["rate"]), "", "", "", ""))
    if "replay" in result:
        out += _replay_rows(name, result)
    return out


def _cpu_row(name: str, cpu: dict[str, float | None]) -> Row:
    """The CPU % of each process measured over a case's window (100 % is one core):
    the servers, the load generators (``load``), which share the cores with them, and
    the rest of the machine's busy time (the kernel, and any other process)."""
    shares = {who: percent for who, percent in cpu.items() if who != "box"}
    figures = ", ".join(
        f"{who} {'?' if percent is None else f'{percent:.0f}'}" for who, percent in shares.items()
    )
    box = cpu.get("box")
    if box is not None and None not in shares.values():
        figures += f", rest {box - sum(p for p in shares.values() if p is not None):.0f}"
    return (name, "CPU % in the window", figures, "", "", "", "")


def _stream_row(name: str, stream: dict[str, Any]) -> Row:
    """Redis's memory per record in the cluster's stream, and how full its entries were."""
    per = stream.get("bytes_per_record")
    entries = f"{stream['entries']} entries"
    if stream.get("records_per_entry"):
        entries += f", {stream['records_per_entry']:.1f} records each"
    return (name, "Redis bytes per record", f"{per:.0f}" if per else "?", "", "", entries, "")


def _cluster_blast_rows(
    name: str, result: dict[str, Any], results: dict[str, dict[str, Any]]
) -> list[Row]:
    """A cluster throughput case: lines/s beside the case it is compared with (one node
    beside a plain server, two beside one), the CPU % of each process, whether every
    subscriber got every line, and what each node took in and handed out."""
    load, _, mode = name.removeprefix("cluster-").rpartition("-")
    rate = result["deliveries_per_s"]
    what = "lines/s" if result.get("subscribers") == 1 else "deliveries/s"
    ratio = target = ""
    ok = None
    if mode in CLUSTER_BASES:
        base_name = f"cluster-{load}-{CLUSTER_BASES[mode]}"
        base = results.get(base_name, {}).get("deliveries_per_s")
        if base:
            ratio = f"{rate / base:.2f}"
            target = f"vs {CLUSTER_BASES[mode]}"
            if mode == "2nodes":
                target = f">= {CLUSTER_SPEEDUP:g}x 1node"
                ok = rate >= CLUSTER_SPEEDUP * base
    out: list[Row] = [(name, what, si(rate), "", ratio, target, verdict(ok))]
    if "cpu" in result:
        out.append(_cpu_row(name, result["cpu"]))
    if "accounted" in result:
        subs = result["subscribers"]
        counted = f"{result['accounted']}/{subs} accounted for all {si(result['published'])}"
        if result["dropped"]:
            counted += f", {si(result['dropped'])} of them in drop notices"
        if result["lost"] or result["extra"]:
            counted += f"; {result['lost']} lost, {result['extra']} extra"
        clean = result["accounted"] == subs and not result["lost"] and not result["extra"]
        out.append(
            (name, "every line counted", counted, "", "", "all, 0 lost, 0 extra", verdict(clean))
        )
    nodes = result.get("per_node", [])
    if len(nodes) > 1:
        split = ", ".join(
            f"{label} {si(node['records_in'])}/{si(node['lines_out'])}"
            for label, node in zip("AB", nodes, strict=False)
        )
        publishing = sum(1 for node in nodes if node["records_in"])
        serving = sum(1 for node in nodes if node["lines_out"])
        note = f"publishers on {publishing}, subscribers on {serving} of {len(nodes)}"
        out.append((name, "per node: published/to subs", split, "", "", "", note))
    rates = result.get("window_rates", {})
    if result.get("server") == "cluster" and rates:
        per_node = []
        for label in "AB"[: len(nodes)]:
            figures = [rates.get(f"{label} {key}", 0.0) for key in RATE_KEYS]
            per_node.append(f"{label} " + "/".join(si(f) for f in figures))
        out.append(
            (name, "per s: " + "/".join(RATE_KEYS.values()), ", ".join(per_node), "", "", "", "")
        )
    return out + _link_rows(name, result)


def _link_rows(name: str, result: dict[str, Any]) -> list[Row]:
    """For a case with cluster nodes: whether a node left its cluster during it (and
    why), and the records its nodes did not relay or never got."""
    if result.get("server") != "cluster":
        return []
    nodes = result.get("per_node", [])
    parts = [
        f"{label} alone {len(reasons)}x ({reasons[0][:48]})"
        for label, reasons in result.get("alone", {}).items()
    ]
    unrelayed = sum(node.get("cluster_records_unrelayed", 0) for node in nodes)
    missed = sum(node.get("cluster_records_missed", 0) for node in nodes)
    if unrelayed or missed:
        parts.append(f"{si(unrelayed)} unrelayed, {si(missed)} missed")
    text = "; ".join(parts) if parts else "every node stayed joined"
    return [(name, "cluster link", text, "", "", "", "note" if parts else "")]


def _cluster_cost_rows(
    name: str, result: dict[str, Any], results: dict[str, dict[str, Any]]
) -> list[Row]:
    """CPU microseconds per relayed record: a plain server with no subscriber and with
    one; node A (publishers only) and node B (one subscriber only) beside it; Redis's
    CPU and memory per record."""
    if "error" in result or "records" not in result:
        return []
    records = f"{si(result['records'])} records"
    if name == "cluster-cost-plain":
        alone = result["no_subscriber"]["cpu_us"]["node"]
        served = result["one_subscriber"]["cpu_us"]["node"]
        return [
            (name, "node CPU us/record, no subscriber", f"{alone:.2f}", "", "", records, ""),
            (name, "node CPU us/record, 1 subscriber", f"{served:.2f}", "", "", records, ""),
        ]
    cpu = result["cpu_us"]
    plain = results.get("cluster-cost-plain", {})
    alone = plain.get("no_subscriber", {}).get("cpu_us", {}).get("node")
    served = plain.get("one_subscriber", {}).get("cpu_us", {}).get("node")
    out_note = in_note = ""
    if alone is not None and served is not None:
        out_note = f"relaying out: +{cpu['node A'] - alone:.2f} over plain ingest"
        deliver = served - alone
        in_note = f"relaying in: +{cpu['node B'] - deliver:.2f} over plain delivery"
    out: list[Row] = [
        (name, "out: node A CPU us/record", f"{cpu['node A']:.2f}", "", "", out_note, ""),
        (name, "in: node B CPU us/record", f"{cpu['node B']:.2f}", "", "", in_note, ""),
        (name, "redis-server CPU us/record", f"{cpu['redis']:.2f}", "", "", records, ""),
        _stream_row(name, result["redis"]),
    ]
    got = result["lines"] + result["dropped"]
    out += _link_rows(name, result)
    out.append(
        (
            name,
            "node B's subscriber got",
            f"{result['lines']} + {result['dropped']} dropped",
            "",
            "",
            f"= {result['records']}",
            verdict(got == result["records"]),
        )
    )
    return out


def _replay_rows(name: str, result: dict[str, Any]) -> list[Row]:
    """Per format: median ms to the first and to the last replayed line; then whether
    every run got every line, in order, and the end of the response."""
    out: list[Row] = []
    runs = complete = 0
    for form, summary in result["replay"].items():
        figures = f"{summary['first_ms']:.1f} / {summary['last_ms']:.1f}"
        measure = f"{form}: ms to first / last line"
        out.append((name, measure, figures, "", "", f"median of {len(summary['runs'])}", ""))
        runs += len(summary["runs"])
        complete += summary["complete"]
    out.append(
        (
            name,
            "runs complete, in order",
            f"{complete}/{runs}",
            "",
            "",
            f"all {result['records']} lines, no notice",
            verdict(complete == runs),
        )
    )
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    """The results as a fixed-width text table."""
    header = HEADER
    body = [wide(row) for row in rows(results)]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, meta: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
    """Write the results (without raw histograms) as JSON."""
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
