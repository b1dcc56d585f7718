"""Run the logio benchmark: ``python -m bench [--quick] [--scenario ingest,fanout]``.

Starts ``twistd -n logio`` (and redis-server and nats-server for the peer, users and
scaling scenarios, redis-server for the cluster one) on free loopback ports, drives each
from separate processes, prints a table, and writes ``results.json``, ``bench.png`` and
the servers' logs into ``--out`` (default ``bench/results``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from tqdm import tqdm

from .charts import chart
from .procs import nats_version, redis_version
from .report import table, write_json
from .scenarios import DEFAULT_SCENARIOS, SCENARIOS, Bench, Settings
from .workers import raise_nofile


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scenario",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated subset of: {','.join(SCENARIOS)} (default: all but cluster)",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (about 2 minutes)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results", help="output folder"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server during each throughput window (figures then run slower)",
    )
    parser.add_argument(
        "--server-python",
        metavar="PYTHON",
        help="run twistd with this interpreter (e.g. pypy3 with logio installed)",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for 'twistd logio' (repeatable), e.g. --server-arg=--buffer=1000",
    )
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=0.0,
        help="soak lines/s over all publishers (default: half the measured capacity)",
    )
    parser.add_argument("--idle-count", type=int, help="idle subscribers (default 10000)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios and report."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    chosen = [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; choose from {SCENARIOS}")
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = Settings.quick_settings(out) if args.quick else Settings(out=out)
    settings.profile = args.profile
    settings.python = args.server_python
    settings.server_args = args.server_arg
    settings.soak_rate = args.soak_rate
    if args.idle_count:
        settings.idle_count = args.idle_count
    raise_nofile()
    tqdm.monitor_interval = 0  # no monitor thread: workers are forked
    ordered = [s for s in SCENARIOS if s in chosen]
    total = sum(Bench.case_count(s, settings) for s in ordered)
    started = time.time()
    with tqdm(total=total, unit="case", disable=args.no_progress) as bar:
        bench = Bench(settings, None if args.no_progress else bar)
        for scenario in ordered:
            bench.run(scenario)
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick,
        "python": platform.python_version(),
        "server_python": args.server_python or sys.executable,
        "cpus": os.cpu_count(),
        "redis": redis_version() if {"peer", "cluster", "scaling"} & set(ordered) else None,
        "nats": nats_version() if {"peer", "users", "scaling"} & set(ordered) else None,
    }
    text = table(bench.results)
    print(text)
    (out / "table.txt").write_text(text + "\n")
    write_json(out / "results.json", meta, bench.results)
    chart(out / "bench.png", bench.results)
    print(f"\nwrote {out / 'results.json'}, {out / 'bench.png'} ({meta['seconds']} s)")
    failed = [n for n, r in bench.results.items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
