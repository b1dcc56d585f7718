"""The harness every scenario runs on: how long and how big (L{Settings}), worker
processes (L{Worker}), and L{Harness}, which starts a fresh server for each case, runs one
bounded load against it from worker processes and aggregates what they saw."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .nats import subject_for
from .procs import (
    CpuWindow,
    MemorySampler,
    Profiler,
    Server,
    start_logio,
    start_nats,
    start_redis,
)
from .wire import percentiles
from .workers import CTX, Plan, PubSpec, SubSpec, publish, subscribe

BLAST_RECORDS = 512
"""Lines in the block a blasting publisher sends again and again."""


@dataclass
class Settings:
    """How long and how big each scenario runs."""

    out: Path
    quick: bool = False
    warmup: float = 2.0
    measure: float = 6.0
    latency_rate: float = 10_000.0
    latency_seconds: float = 10.0
    idle_count: int = 10_000
    soak_seconds: float = 60.0
    soak_rate: float = 0.0
    """Lines/s over all soak publishers; 0: half the capacity measured just before."""
    replay_records: int = 10_000
    replay_repeats: int = 9
    """Replay requests per format; the table shows the median."""
    cost_records: int = 1_000_000
    """Records relayed to measure a cluster node's CPU time and Redis's memory."""
    latency_runs: int = 5
    """The latency loads run this many times in a row, each run reported."""
    users_seconds: float = 10.0
    """How long a fleet of small publishers publishes (the users scenario)."""
    scaling_window: tuple[float, float] = (1.0, 3.0)
    """A scaling point's warm-up and measuring window, in seconds."""
    profile: bool = False
    python: str | None = None
    server_args: list[str] = field(default_factory=list)

    @classmethod
    def quick_settings(cls, out: Path) -> Settings:
        """A run of about two minutes."""
        return cls(
            out=out,
            quick=True,
            warmup=0.5,
            measure=2.0,
            latency_seconds=3.0,
            idle_count=1000,
            soak_seconds=10.0,
            replay_repeats=5,
            cost_records=200_000,
            latency_runs=2,
            users_seconds=4.0,
            scaling_window=(0.3, 1.0),
        )


class Worker:
    """One load-generating process and the orchestrator's end of its pipe."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self.conn, child = CTX.Pipe()
        self.proc = CTX.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        child.close()

    def send(self, message: object) -> None:
        """Send ``message`` to the worker."""
        self.conn.send(message)

    def wait(self, kind: str, timeout: float, tick: Callable[[], None] | None = None) -> Any:
        """The worker's next message, which must be ``kind``."""
        end = time.monotonic() + timeout
        while not self.conn.poll(0.1):
            if tick:
                tick()
            if not self.proc.is_alive() and not self.conn.poll():
                raise RuntimeError(f"worker exited with code {self.proc.exitcode}")
            if time.monotonic() > end:
                raise TimeoutError(f"no {kind!r} from a worker in {timeout:.0f} s")
        message = self.conn.recv()
        if message[0] == "error":
            raise RuntimeError(f"worker failed:\n{message[1]}")
        if message[0] != kind:
            raise RuntimeError(f"expected {kind!r} from a worker, got {message[0]!r}")
        return message[1]

    def close(self) -> None:
        """Reap the process (killing it if it is stuck) and close the pipe."""
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` dealt round-robin into ``parts`` non-empty lists."""
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]


def subscriber(kind: str, app: str, exact: bool = False) -> SubSpec:
    """A counting subscriber to one app: a logio ``app=`` regex, a Redis pattern or a
    NATS subject."""
    if kind == "redis":
        return SubSpec("redis", f"{app}.*")
    if kind == "nats":
        return SubSpec("nats", subject_for(app))
    return SubSpec("http", f"app=^{app}$" if exact else f"app={app}")


def latency_summary(histogram: np.ndarray, max_ns: int) -> dict[str, float]:
    """p50 / p99 / p99.9 / max in milliseconds."""
    p50, p99, p999 = percentiles(histogram, max_ns, (0.5, 0.99, 0.999))
    return {"p50_ms": p50, "p99_ms": p99, "p999_ms": p999, "max_ms": max_ns / 1e6}


def run_body(result: dict[str, Any], body: Callable[..., dict[str, Any]], *args: Any) -> None:
    """Run a case's ``body`` on ``args`` into ``result``; what it raises is reported there
    (the run goes on)."""
    try:
        result.update(body(*args))
    except Exception as error:  # noqa: BLE001 - reported per case
        result["error"] = f"{type(error).__name__}: {error}"
        result["traceback"] = traceback.format_exc()


class Harness:
    """Runs cases and collects one result dict per case."""

    def __init__(self, settings: Settings, bar: tqdm | None = None) -> None:
        self.settings = settings
        self.results: dict[str, dict[str, Any]] = {}
        self.bar = bar

    # -- running one case ---------------------------------------------------------------

    def case(
        self,
        name: str,
        server_kind: str,
        body: Callable[[Server], dict[str, Any]],
        extra: tuple[str, ...] = (),
    ) -> None:
        """Start a fresh server (with ``extra`` arguments), run ``body`` against it,
        stop it, keep the result."""
        if self.bar is not None:
            self.bar.set_description(name)
        log = self.settings.out / "logs" / f"{name}.log"
        started = time.monotonic()
        result: dict[str, Any] = {"case": name, "server": server_kind}
        try:
            if server_kind == "redis":
                server = start_redis(log)
            elif server_kind == "nats":
                server = start_nats(log)
            else:
                server = start_logio(
                    log, self.settings.python, [*self.settings.server_args, *extra]
                )
        except Exception as error:  # noqa: BLE001 - reported per case, the run goes on
            result["error"] = str(error)
        else:
            run_body(result, body, server)
            result["server_alive"] = server.alive()
            result["server_exit"] = server.stop()
            if not result["server_alive"]:
                result["server_log_tail"] = server.log()[-1500:]
        self.keep(name, result, started)

    def keep(self, name: str, result: dict[str, Any], started: float) -> None:
        """Keep a case's result, with the seconds since it ``started``; show its progress,
        and its error if it had one."""
        result["seconds"] = round(time.monotonic() - started, 1)
        self.results[name] = result
        if self.bar is not None:
            self.bar.update(1)
            if "error" in result:
                tqdm.write(f"{name}: {result['error'].splitlines()[0]}")

    def load(
        self,
        server: Server,
        pubs: list[list[PubSpec]],
        subs: list[list[SubSpec]],
        *,
        rate: float = 0.0,
        seconds: float = 0.0,
        tick: float = 0.0,
        drain: float = 10.0,
        memory: bool = False,
        profile: str = "",
        before: Callable[[], dict[str, Any]] | None = None,
        pub_port: int = 0,
        sub_port: int = 0,
        cpu: dict[str, int] | None = None,
        exact: bool = False,
        probe: Callable[[], dict[str, float]] | None = None,
        publisher: Callable[[int, list[PubSpec]], Worker] | None = None,
        records: int = BLAST_RECORDS,
        timing: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """Run one load: blast (``rate`` 0) or paced at ``rate`` lines/s per publisher
        for ``seconds``. Returns what the subscribers saw, aggregated.

        ``publisher`` starts the worker of a group of publishers, given the port (by
        default L{publish}'s, whose blasting publishers send blocks of ``records``
        lines); a blast is measured after ``timing``'s warm-up for its seconds (by
        default the settings').

        Publishers connect to ``pub_port`` and subscribers to ``sub_port`` (by default
        the server's). ``cpu`` names processes whose CPU % in the throughput window (the
        publishing period, paced) to measure, beside the load's own workers (``load``).
        With ``exact`` a blast's subscribers go on after the window until every line
        published has arrived (within ``drain`` seconds), to be counted. ``probe`` (with
        ``cpu``) is read at both ends of the window: how fast its figures grew then."""
        settings = self.settings
        pub_port = pub_port or server.pub_port
        sub_port = sub_port or server.sub_port
        sub_workers: list[Worker] = []
        pub_workers: list[Worker] = []
        out: dict[str, Any] = {}
        try:
            sub_workers = [Worker(subscribe, sub_port, group) for group in subs]
            connect_timeout = 90 + sum(len(g) for g in subs) / 100
            failed = []
            for worker in sub_workers:
                ready = worker.wait("ready", connect_timeout)
                failed += ready["failed"]
            if failed:
                raise RuntimeError(f"subscribers failed to connect: {failed[:3]}")
            if publisher is None:
                pub_workers = [
                    Worker(publish, pub_port, group, records, sub_port) for group in pubs
                ]
            else:
                pub_workers = [publisher(pub_port, group) for group in pubs]
            for worker in pub_workers:
                worker.wait("ready", 30 + sum(len(group) for group in pubs) / 100)
            if before is not None:
                out.update(before())
            sampler = MemorySampler(server) if memory else None
            if sampler is not None:
                sampler.start()
            start = time.monotonic() + 0.3
            if rate:
                stop = start + seconds
                window = (start, stop)
                deadline = stop + drain
            else:
                warmup, measure = timing or (settings.warmup, settings.measure)
                window = (start + warmup, start + warmup + measure)
                stop = window[1]
                deadline = stop + (drain if exact else 10)
            plan = Plan(start, window, stop, deadline, rate, tick, exact)
            watch = None
            if cpu is not None:
                groups = {name: [pid] for name, pid in cpu.items()}
                groups["load"] = [
                    pid for w in sub_workers + pub_workers if (pid := w.proc.pid) is not None
                ]
                watch = CpuWindow(groups, *window, probe=probe)
                watch.start()
            for worker in sub_workers + pub_workers:
                worker.send(plan)
            total = stop - start
            with tqdm(
                total=round(total, 1), unit="s", leave=False, disable=self.bar is None
            ) as bar:

                def tick_bar() -> None:
                    bar.n = round(min(total, max(0.0, time.monotonic() - start)), 1)
                    bar.refresh()

                profiler = None
                if profile and settings.profile:
                    time.sleep(max(0.0, window[0] - time.monotonic()))
                    span = window[1] - window[0]
                    profiler = Profiler(
                        server.pid, span, settings.out / "profiles" / f"{profile}.txt"
                    )
                published: dict[int, int] = {}
                for worker in pub_workers:
                    done = worker.wait("done", deadline - time.monotonic() + 30, tick_bar)
                    published.update(done.pop("published"))
                    for key, value in done.items():
                        # Other figures of a publisher's (a fleet's lines made...).
                        out.setdefault("publishers_saw", {}).setdefault(key, []).append(value)
                if rate or exact:
                    for worker in sub_workers:
                        worker.send(("expect", published))
                sub_results = [
                    worker.wait("done", deadline - time.monotonic() + 30, tick_bar)
                    for worker in sub_workers
                ]
            if sampler is not None:
                out["memory"] = sampler.finish()
            if watch is not None:
                out["cpu"] = watch.finish()
                if probe is not None:
                    out["window_rates"] = watch.rates
                    if watch.error:
                        out["probe_error"] = watch.error
            if profiler is not None:
                out["profile"] = profiler.finish()
        finally:
            for worker in sub_workers + pub_workers:
                worker.close()
        out.update(self.aggregate(published, sub_results, paced=bool(rate), exact=exact))
        if not rate:
            out["published_per_s"] = out["published"] / (stop - start)
        out["publishers"] = sum(len(g) for g in pubs)
        out["subscribers"] = sum(len(g) for g in subs)
        return out

    @staticmethod
    def aggregate(
        published: dict[int, int],
        sub_results: list[dict[str, Any]],
        paced: bool,
        exact: bool = False,
    ) -> dict[str, Any]:
        """Sum what the subscribers saw: deliveries/s in the window (blast), and for
        paced loads, loss, order and latency over the healthy subscribers. An ``exact``
        blast also says how many subscribers got every line published, and how many
        accounted for each (received, or dropped with a notice)."""
        streams = [s for r in sub_results for s in r["streams"]]
        healthy = [s for s in streams if not s["stall"] and not s["throttle"]]
        out: dict[str, Any] = {
            "published": sum(published.values()),
            "delivered": sum(s["lines"] for s in streams),
            "dropped": sum(s["dropped"] for s in streams),
            "notices": sum(s["notices"] for s in streams),
            "closed_subscribers": sum(bool(s.get("closed")) for s in streams),
        }
        if not paced:
            out["deliveries_per_s"] = sum(
                sum(s["window_lines"] for s in r["streams"]) / r["window_seconds"]
                for r in sub_results
                if r["window_seconds"]
            )
            if exact:
                expected = out["published"]
                counts = [s["lines"] + s["dropped"] for s in streams]
                out["subscriber_lines"] = [s["lines"] for s in streams]
                out["complete"] = sum(s["lines"] == expected for s in streams)
                out["accounted"] = sum(count == expected for count in counts)
                out["lost"] = sum(max(0, expected - count) for count in counts)
                out["extra"] = sum(max(0, count - expected) for count in counts)
            return out
        expected = out["published"]
        out["healthy_complete"] = sum(s["lines"] == s.get("expected", expected) for s in healthy)
        out["healthy"] = len(healthy)
        out["healthy_dropped"] = sum(s["dropped"] for s in healthy)
        parsed = [s for s in healthy if "histogram" in s]
        if parsed:
            histogram = np.sum([s["histogram"] for s in parsed], axis=0)
            max_ns = max(s["max_latency_ns"] for s in parsed)
            out["latency"] = latency_summary(histogram, max_ns)
            out["missing"] = sum(s["missing"] for s in parsed)
            out["reordered"] = sum(s["reordered"] for s in parsed)
            out["unparsed"] = sum(s["unparsed"] for s in parsed)
        out["slow"] = [
            {
                key: s.get(key)
                for key in ("lines", "dropped", "notices", "missing", "reordered", "unparsed")
            }
            for s in streams
            if s["throttle"]
        ]
        return out

    # -- the scenarios ------------------------------------------------------------------

    def blast_case(
        self,
        name: str,
        kind: str,
        pubs: list[PubSpec],
        subs: list[SubSpec],
        workers: int,
        extra: tuple[str, ...] = (),
    ) -> None:
        """A throughput case: publishers send as fast as the server reads; the server's
        CPU % in the window beside the load's."""
        self.case(
            name,
            kind,
            lambda server: self.load(
                server, [pubs], split(subs, workers), profile=name, cpu={"server": server.pid}
            ),
            extra,
        )

    def latency_load(
        self,
        server: Server,
        count: int,
        stall: bool = False,
        pub_port: int = 0,
        sub_port: int = 0,
        cpu: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Open-loop publishing to ``count`` parsing subscribers (plus a stalled one);
        the ports and the processes to measure as L{load} takes them."""
        settings = self.settings
        subs = [SubSpec("http", "app=bench", parse=True)] * count
        groups = split(subs, 1 if count <= 10 else 2)
        if stall:
            groups[0].append(SubSpec("http", "app=bench", stall=True, rcvbuf=4096))
        pubs = [[PubSpec("seed", "bench", proc="lat")]]
        return self.load(
            server,
            pubs,
            groups,
            rate=settings.latency_rate,
            seconds=settings.latency_seconds,
            memory=True,
            profile=f"{'stall' if stall else 'latency'}-{count}",
            pub_port=pub_port,
            sub_port=sub_port,
            cpu=cpu,
        )


def wait_metric(server: Server, key: Any, least: float, timeout: float = 120.0) -> float:
    """Wait until the server's metric ``key`` is at least ``least``; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = server.metrics().get(key, 0)
        if value >= least or time.monotonic() > deadline:
            return value
        time.sleep(0.2)
