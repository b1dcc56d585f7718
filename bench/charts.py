"""The benchmark's picture, ``bench.png``: a panel per kind of figure the run measured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .report import NATS_PEERS, PEERS, _has_logio_twin
from .report_loads import LATER_RUN
from .scaling import AXES, COUNTS, SERVERS, point_name, points

SERVER_NAMES = {"logio": "logio", "redis": "redis-server", "nats": "nats-server"}
SERVER_COLOURS = {"logio": "tab:blue", "redis": "tab:orange", "nats": "tab:green"}
"""Each server's colour, the same in every panel."""


def chart(path: Path, results: dict[str, dict[str, Any]]) -> None:
    """A PNG: deliveries/s per throughput case (logio beside redis and nats), latency
    percentiles per latency case, memory figures and history replay times; below them
    the scaling curves; a panel only if the run measured something for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The amplified case's subscribers never read: it has no throughput to draw; the
    # scaling points are curves of their own.
    blast = [
        n
        for n, r in results.items()
        if "deliveries_per_s" in r
        and "amplified" not in r
        and not n.startswith("scaling-")
        and not _has_logio_twin(n, results)
    ]
    curves = [axis for axis in AXES if any(points(results, axis, kind) for kind in SERVERS)]
    # A latency load's later runs are drawn with its first.
    timed = [n for n, r in results.items() if "latency" in r and not LATER_RUN.match(n)]
    memory = _memory_bars(results)
    replays = [n for n, r in results.items() if "replay" in r]
    panels: list[tuple[float, Callable[[Any], None]]] = []
    if blast:
        panels.append((3, lambda ax: _throughput_panel(ax, results, blast)))
    if timed:
        panels.append((2, lambda ax: _latency_panel(ax, results, timed)))
    if memory[0]:
        panels.append((1.5, lambda ax: _memory_panel(ax, *memory)))
    if replays:
        panels.append((1.5 + 0.3 * len(replays), lambda ax: _replay_panel(ax, results, replays)))
    if not panels and not curves:
        panels.append((1, lambda ax: ax.set_title("no figures measured")))
    ratios = [ratio for ratio, _ in panels]
    heights = [6.5] * bool(panels) + [5.0] * bool(curves)
    fig = plt.figure(
        figsize=(max(12.0 if curves else 8.0, 2.2 * sum(ratios) + 2), sum(heights)),
        layout="constrained",
    )
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    if panels:
        row = grid[0].subgridspec(1, len(panels), width_ratios=ratios)
        for column, (_, draw) in enumerate(panels):
            draw(fig.add_subplot(row[0, column]))
    if curves:
        row = grid[-1].subgridspec(1, len(curves))
        for column, axis in enumerate(curves):
            _scaling_panel(fig.add_subplot(row[0, column]), results, axis)
    fig.suptitle("logio benchmark (loopback, 100-byte lines)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _scaling_panel(ax: Any, results: dict[str, dict[str, Any]], axis: str) -> None:
    """Deliveries/s against the number of subscribers (1 publisher) or of publishers (1
    subscriber), a curve per server, each point labelled with its figure."""
    styles = {"logio": "o-", "redis": "s--", "nats": "^-."}
    # Each server's figures above or below its points, so that close ones stay apart.
    offsets = {"logio": 7, "redis": -13, "nats": 16}
    highest = max((rate for kind in SERVERS for _, rate in points(results, axis, kind)), default=0)
    # Figures this low go above their points, clear of the axis.
    low = 0.03 * highest / 1e6
    for kind in SERVERS:
        measured = points(results, axis, kind)
        if not measured:
            continue
        xs, rates = zip(*measured, strict=True)
        millions = [rate / 1e6 for rate in rates]
        colour = SERVER_COLOURS[kind]
        ax.plot(xs, millions, styles[kind], label=SERVER_NAMES[kind], color=colour, linewidth=2)
        for x, y in zip(xs, millions, strict=True):
            # A server that cut its subscriber off delivered nothing: say so.
            cut = results[point_name(axis, x, kind)].get("closed_subscribers")
            ax.annotate(
                "cut off" if cut and not y else f"{y:.2g}",
                (x, y),
                textcoords="offset points",
                xytext=(0, offsets[kind] if y > low else 5),
                ha="center",
                fontsize=7,
                color=colour,
            )
    ax.set_xscale("log")
    ax.set_xticks(list(COUNTS), [f"{count:,}" for count in COUNTS])
    ax.minorticks_off()
    ax.set_ylim(bottom=0, top=max(0.1, ax.get_ylim()[1] * 1.12))
    other = "1 publisher" if axis == "subs" else "1 subscriber"
    ax.set_xlabel(f"{AXES[axis]} ({other}, log scale)")
    ax.set_ylabel("million deliveries per second")
    ax.set_title(f"Scaling: deliveries/s against {AXES[axis]}")
    ax.grid(True, alpha=0.3)
    ax.legend()


def _throughput_panel(ax: Any, results: dict[str, dict[str, Any]], blast: list[str]) -> None:
    """Million deliveries/s per blast case, logio beside redis-server and nats-server (a
    peer's case run without logio's twin is drawn as that peer's)."""
    ys = range(len(blast))
    own = {n: next((k for k in ("redis", "nats") if n.startswith(f"{k}-")), "logio") for n in blast}
    series = []
    for kind, peers in (("logio", {}), ("redis", PEERS), ("nats", NATS_PEERS)):
        figures = [
            results[n]["deliveries_per_s"] / 1e6
            if own[n] == kind
            else results.get(peers.get(n, ""), {}).get("deliveries_per_s", 0) / 1e6
            for n in blast
        ]
        if any(figures):
            series.append((kind, figures))
    height = 0.8 / max(1, len(series))
    for i, (kind, figures) in enumerate(series):
        shift = (i - (len(series) - 1) / 2) * height
        ax.barh(
            [y + shift for y in ys],
            figures,
            height=height,
            label=SERVER_NAMES[kind],
            color=SERVER_COLOURS[kind],
        )
    ax.set_yticks(list(ys), blast)
    ax.invert_yaxis()
    ax.set_xlabel("million lines delivered per second")
    ax.set_title("Throughput")
    ax.legend()


def _latency_panel(ax: Any, results: dict[str, dict[str, Any]], timed: list[str]) -> None:
    """p50 / p99 / p99.9 per open-loop case; a load run several times shows each run's
    p99 too."""
    width = 0.25
    # Shades of one colour, apart from the servers' colours.
    quantiles = (
        ("p50_ms", "p50", "#cbc9e2"),
        ("p99_ms", "p99", "#9e9ac8"),
        ("p999_ms", "p99.9", "#6a51a3"),
    )
    for i, (key, label, colour) in enumerate(quantiles):
        ax.bar(
            [x + (i - 1) * width for x in range(len(timed))],
            [results[n]["latency"][key] for n in timed],
            width=width,
            label=label,
            color=colour,
        )
    runs: list[tuple[int, float]] = []
    for x, name in enumerate(timed):
        p99s = [
            run["latency"]["p99_ms"]
            for other, run in results.items()
            if "latency" in run
            and (other == name or ((match := LATER_RUN.match(other)) and match.group(1) == name))
        ]
        if len(p99s) > 1:
            runs += [(x, p99) for p99 in p99s]
    if runs:
        xs, each = zip(*runs, strict=True)
        ax.scatter(xs, each, color="black", marker="_", s=200, zorder=3, label="p99, each run")
    ax.set_xticks(list(range(len(timed))), timed, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ms from intended send time to receipt")
    ax.set_title("Latency (open loop)")
    ax.legend()


def _memory_bars(results: dict[str, dict[str, Any]]) -> tuple[list[str], list[float]]:
    """The memory figures to draw: RSS growth under load, per 1000 idle subscribers and
    publishers, and the amplified case's peak."""
    labels, values = [], []
    for name in ("latency-10", "stall-10", "soak"):
        if "memory" in results.get(name, {}):
            labels.append(f"{name}\nRSS growth")
            values.append(results[name]["memory"]["growth_kb"] / 1024)
    for name, result in results.items():
        if "idle" in result:
            labels.append(f"{name}\nper 1000 idle")
            values.append(result["idle"]["per_subscriber_kib"] * 1000 / 1024)
        if "idle_publishers" in result:
            labels.append(f"{name}\nper 1000 idle")
            values.append(result["idle_publishers"]["per_publisher_kib"] * 1000 / 1024)
        if "amplified" in result:
            labels.append(f"{name}\npeak RSS")
            values.append(result["amplified"]["peak_mb"] * 1e6 / 2**20)
    return labels, values


def _memory_panel(ax: Any, labels: list[str], values: list[float]) -> None:
    """Server memory figures in MiB."""
    bars = ax.bar(range(len(values)), values)
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(list(range(len(values))), labels, fontsize=7, rotation=35, ha="right")
    ax.set_ylabel("MiB")
    ax.set_title("Server memory")


def _replay_panel(ax: Any, results: dict[str, dict[str, Any]], names: list[str]) -> None:
    """Median ms from request to the first and to the last replayed line, per case and
    format, each bar labelled with its figure."""
    labels, firsts, lasts = [], [], []
    for name in names:
        for form, summary in results[name]["replay"].items():
            labels.append(f"{name}\n{form}")
            firsts.append(summary["first_ms"])
            lasts.append(summary["last_ms"])
    xs = range(len(labels))
    width = 0.38
    for offset, values, label in ((-1, firsts, "first line"), (1, lasts, "last line")):
        bars = ax.bar([x + offset * width / 2 for x in xs], values, width=width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_ylabel("ms from request sent (median)")
    ax.set_title("History replay (tail=N, follow=0)")
    ax.legend()
