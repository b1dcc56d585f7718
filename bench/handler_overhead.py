"""Per-call overhead of ``logger.info`` with LogioHandler: ``python -m bench.handler_overhead``.

The same logger and message are timed with a handler that only formats the
record (the floor: what any handler pays) and with LogioHandler while the server
is up (a real ``twistd -n logio``), down (nothing listening: the client keeps
redialling with backoff) and stalled (the port accepts connections but nothing
ever reads them). Each scenario runs in windows of ``--calls`` calls, so growth
over time shows; every call is timed on its own for the percentiles.

With the server up, a ``logio tail`` subprocess subscribes and the run checks
what was delivered: the call numbers arrive in order, and the records missing
are exactly those the client's drop notices announce.

Target (issue 3): at most 10 us per call above the format-only handler, and no
growth while the server is down.
"""

from __future__ import annotations

import argparse
import array
import json
import logging
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from logio.client.handler import DEFAULT_FORMAT, LogioHandler
from tests.support.ports import freePort
from tests.support.processes import environment, logio, procStatus

from .procs import start_logio

MESSAGE = "call %d handled in %.3f ms"
_CALL = re.compile(rb": INFO bench: call (\d+) handled in")
_NOTICE = re.compile(rb": logio: (\d+) records? dropped")


class FormatOnly(logging.Handler):
    """The floor: format the record, as every handler does, and drop it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def rss_kb() -> int:
    """This process's resident memory (VmRSS), in kB."""
    return procStatus(os.getpid()).get("VmRSS", 0)


def timed_calls(handler: logging.Handler, windows: int, calls: int) -> dict[str, object]:
    """Log ``windows * calls`` records through ``handler``, timing each call."""
    logger = logging.getLogger(f"bench.{id(handler)}")
    logger.name = "bench"
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    clock = time.perf_counter_ns
    durations = array.array("q", bytes(8 * calls))
    means, p99s, rss = [], [], []
    everything: list[int] = []
    number = 0
    for _ in range(windows):
        for i in range(calls):
            started = clock()
            logger.info(MESSAGE, number, 1.234)
            durations[i] = clock() - started
            number += 1
        ordered = sorted(durations)
        everything.extend(ordered[:: max(calls // 1000, 1)])
        means.append(sum(durations) / calls / 1000)
        p99s.append(ordered[int(calls * 0.99)] / 1000)
        rss.append(rss_kb())
    logger.removeHandler(handler)
    everything.sort()
    return {
        "calls": number,
        "mean_us": statistics.mean(means),
        "window_mean_us": [round(m, 2) for m in means],
        "p50_us": everything[len(everything) // 2] / 1000,
        "p99_us": statistics.median(p99s),
        "max_us": max(durations) / 1000,
        "rss_kb": rss,
    }


def logio_handler(url: str) -> LogioHandler:
    """A LogioHandler with the default format and quiet reports."""
    handler = LogioHandler(url, flush_timeout=10)
    handler.publisher.report = lambda message: None
    return handler


def check_delivery(
    output: Path, calls: int, dropped: int, timeout: float = 60
) -> dict[str, object]:
    """Wait for the subscriber to see every record not dropped; check order and counts."""
    deadline = time.monotonic() + timeout
    while True:
        data = output.read_bytes()
        numbers = [int(n) for n in _CALL.findall(data)]
        announced = sum(int(n) for n in _NOTICE.findall(data))
        if len(numbers) + announced >= calls or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return {
        "delivered": len(numbers),
        "announced_dropped": announced,
        "client_dropped": dropped,
        "in_order": numbers == sorted(set(numbers)),
        "complete": len(numbers) + announced == calls and announced == dropped,
    }


def scenario_up(windows: int, calls: int, workdir: Path) -> dict[str, object]:
    """LogioHandler with a real logio server and one subscriber."""
    server = start_logio(workdir / "logio.log", None, [])
    output = workdir / "subscriber.txt"
    try:
        with open(output, "wb") as sink:
            tail = subprocess.Popen(
                logio("tail", f"http://127.0.0.1:{server.sub_port}/?app=^bench$"),
                stdout=sink,
                stderr=subprocess.DEVNULL,
                env=environment(),
            )
        try:
            probe = logio_handler(f"logio://127.0.0.1:{server.pub_port}?app=bench&proc=probe")
            deadline = time.monotonic() + 30
            while b"probe" not in output.read_bytes():
                if time.monotonic() > deadline:
                    raise RuntimeError("the subscriber never saw the probe")
                probe.handle(logging.makeLogRecord({"msg": "probe", "levelname": "INFO"}))
                time.sleep(0.05)
            probe.close()
            handler = logio_handler(f"logio://127.0.0.1:{server.pub_port}?app=bench&proc=up")
            result = timed_calls(handler, windows, calls)
            handler.flush()
            result.update(check_delivery(output, windows * calls, handler.publisher.dropped_total))
            handler.close()
        finally:
            tail.terminate()
            tail.wait()
    finally:
        server.stop()
    return result


def scenario_down(windows: int, calls: int) -> dict[str, object]:
    """LogioHandler with nothing listening on its port."""
    handler = logio_handler(f"logio://127.0.0.1:{freePort()}?app=bench")
    result = timed_calls(handler, windows, calls)
    result["client_dropped"] = handler.publisher.dropped_total
    handler.publisher.close(0)
    return result


def scenario_stalled(windows: int, calls: int) -> dict[str, object]:
    """LogioHandler with a server that accepts but never reads."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)  # connections complete in the backlog; none is read
    handler = logio_handler(f"logio://127.0.0.1:{listener.getsockname()[1]}?app=bench")
    result = timed_calls(handler, windows, calls)
    result["client_dropped"] = handler.publisher.dropped_total
    handler.publisher.close(0)
    listener.close()
    return result


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.handler_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=50_000, help="calls per window (50000)")
    parser.add_argument("--windows", type=int, default=4, help="windows per scenario (4)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    formatter = logging.Formatter(DEFAULT_FORMAT)
    results: dict[str, dict[str, object]] = {}
    baselines = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in [
            ("up", lambda: scenario_up(args.windows, args.calls, Path(tmp))),
            ("down", lambda: scenario_down(args.windows, args.calls)),
            ("stalled", lambda: scenario_stalled(args.windows, args.calls)),
        ]:
            floor = FormatOnly()
            floor.setFormatter(formatter)
            baseline = timed_calls(floor, args.windows, args.calls)
            baselines.append(baseline)
            results[f"format-only (before {name})"] = baseline
            results[name] = run()
            results[name]["overhead_us"] = results[name]["mean_us"] - baseline["mean_us"]  # type: ignore[operator]
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{args.windows} windows x {args.calls} calls, message {MESSAGE!r}"
    )
    print(
        f"{'scenario':<28}{'mean us':>9}{'over':>7}{'p50':>7}{'p99':>7}{'max':>9}"
        f"{'dropped':>9}  per-window mean us"
    )
    for name, result in results.items():
        over = result.get("overhead_us")
        print(
            f"{name:<28}{result['mean_us']:>9.2f}"
            f"{'' if over is None else f'{over:+.2f}':>7}"
            f"{result['p50_us']:>7.2f}{result['p99_us']:>7.2f}{result['max_us']:>9.0f}"
            f"{result.get('client_dropped', ''):>9}  {result['window_mean_us']}"
        )
    up = results["up"]
    print(
        f"server up: delivered {up['delivered']} records in order={up['in_order']}, "
        f"drop notices announced {up['announced_dropped']} = client dropped "
        f"{up['client_dropped']}: complete={up['complete']}"
    )
    for name in ("down", "stalled"):
        print(f"server {name}: RSS by window (kB) {results[name]['rss_kb']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if up["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
