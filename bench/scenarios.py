"""The benchmark scenarios: each case starts a fresh server, runs one bounded load from
separate worker processes, and returns a result dict.

Scenarios (the names ``--scenario`` takes):

- ``ingest``: 4 publishers -> 1 and -> 10 subscribers, seed JSON and text protocol.
- ``fanout``: 1 publisher -> 10 and -> 100 subscribers with the same filter; 100
  publishers on 100 apps -> 100 subscribers with 100 different app filters; 10
  subscribers with a ``log=`` regex, to show what per-record regexes cost; and 10
  subscribers reading ``format=json`` and ``format=sse``.
- ``latency``: open-loop 10k lines/s for 10 s to 10 and to 100 subscribers.
- ``stall``: the 10-subscriber latency run plus one subscriber that never reads.
- ``idle``: server memory per idle subscriber with 10000 connected.
- ``peer``: the ingest and fan-out loads through redis-server (PUBLISH / PSUBSCRIBE) and
  nats-server (PUB / SUB).
- ``soak``: 20 publishers at half the measured capacity -> 19 subscribers that must see
  every line in order, and 1 throttled subscriber whose drop notices must add up.
- ``store``: seed JSON and text ingest -> 1 subscriber with ``--store`` in a fresh
  folder, beside the same loads in memory only, and the store's bytes on disk per
  record.
- ``replay``: 10000 records published into the server's history, then
  ``?tail=10000&follow=0`` in text, JSON and SSE timed to the first and the last line,
  each run checked for every line in order.
- ``cluster`` (not in the default set; ``--scenario cluster``): nodes started with
  ``--cluster`` on a redis-server of their own. Seed and text ingest (4 publishers -> 1
  subscriber) and fan-out (1 -> 10) on a plain server, on one node and on two nodes
  sharing their ports, each with the CPU % of every process and every subscriber's
  count checked against what was published; the 10k lines/s latency load on a plain
  server, on one node, and published on one node and read on another; and what one
  relayed record costs: CPU time of a node that only publishes and of one that only
  delivers, beside a plain server, and Redis's memory per record in the stream.
"""

from __future__ import annotations

import http.client
import re
import resource
import shutil
import socket
import sqlite3
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from tqdm import tqdm

from tests.support.ports import freePort

from .nats import subject_for
from .procs import (
    CpuWindow,
    MemorySampler,
    Profiler,
    Server,
    cpu_seconds,
    redis_call,
    redis_memory,
    start_logio,
    start_nats,
    start_node,
    start_redis,
)
from .replays import fetch_replays, publish_records
from .wire import blast_buffer, logio_topic, percentiles
from .workers import CTX, Plan, PubSpec, SubSpec, publish, subscribe

DEFAULT_SCENARIOS = (
    "ingest",
    "fanout",
    "replay",
    "latency",
    "stall",
    "idle",
    "peer",
    "soak",
    "store",
)
"""What ``python -m bench`` runs without ``--scenario``."""
SCENARIOS = (*DEFAULT_SCENARIOS, "cluster")
NODE_LABELS = ("A", "B")
ALONE = re.compile(r"going on alone \((.*)\); ")
"""What a node logs when it leaves its cluster (group 1: why)."""
STREAM = "logio:records"
"""The key of the cluster's stream in Redis (``logio.cluster.relay.STREAM``)."""
COST_BLOCK = 10_000
"""Records per block the cost case sends, again and again, on one connection."""
CLUSTER_LOADS = {
    "ingest-seed-1": ([PubSpec("seed", "bench", pub=i, proc=f"p{i}") for i in range(4)], 1),
    "ingest-text-1": ([PubSpec("text", "bench", pub=i, proc=f"p{i}") for i in range(4)], 1),
    "fanout-10": ([PubSpec("seed", "bench")], 10),
}
"""The cluster's throughput loads: their publishers, and how many subscribers to
``app=bench``, as in the ingest and fan-out scenarios."""
REPLAY_FORMATS = ("text", "json", "sse")
BLAST_RECORDS = 512
OUTPUT_LINE = 137
"""Approximate bytes of one logio output line, only to size the slow reader's throttle."""


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


class Bench:
    """Runs the selected scenarios and collects one result dict per case."""

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
            try:
                result.update(body(server))
            except Exception as error:  # noqa: BLE001
                result["error"] = f"{type(error).__name__}: {error}"
                result["traceback"] = traceback.format_exc()
            result["server_alive"] = server.alive()
            result["server_exit"] = server.stop()
            if not result["server_alive"]:
                result["server_log_tail"] = server.log()[-1500:]
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
    ) -> dict[str, Any]:
        """Run one load: blast (``rate`` 0) or paced at ``rate`` lines/s per publisher
        for ``seconds``. Returns what the subscribers saw, aggregated.

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
            pub_workers = [
                Worker(publish, pub_port, group, BLAST_RECORDS, sub_port) for group in pubs
            ]
            for worker in pub_workers:
                worker.wait("ready", 30)
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
                window = (start + settings.warmup, start + settings.warmup + settings.measure)
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
                    published.update(
                        worker.wait("done", deadline - time.monotonic() + 30, tick_bar)["published"]
                    )
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
        out["healthy_complete"] = sum(s["lines"] == expected for s in healthy)
        out["healthy"] = len(healthy)
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

    def run(self, scenario: str) -> None:
        """Run every case of one scenario."""
        getattr(self, f"scenario_{scenario}")()

    @staticmethod
    def case_count(scenario: str, settings: Settings) -> int:
        """How many cases a scenario runs (for the progress bar)."""
        return {
            "ingest": 6,
            "fanout": 6,
            "replay": 1,
            "latency": 2,
            "stall": 1,
            "idle": 1,
            "peer": 10,
            "soak": 2 if not settings.soak_rate else 1,
            "store": 5,
            "cluster": 3 * len(CLUSTER_LOADS) + 3 + 2,
        }[scenario]

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

    def ingest_cases(self, kind: str, proto: str, label: str) -> None:
        """4 publishers -> 1 and -> 10 subscribers, cases named ``label-N``."""
        pubs = [PubSpec(proto, "bench", pub=i, proc=f"p{i}") for i in range(4)]
        for count in (1, 10):
            subs = [subscriber(kind, "bench")] * count
            self.blast_case(f"{label}-{count}", kind, pubs, subs, 1)

    def fanout_cases(self, kind: str, proto: str, label: str) -> None:
        """1 publisher -> 10 / 100 subscribers; 100 apps -> 100 different filters."""
        one = [PubSpec(proto, "bench")]
        for count in (10, 100):
            subs = [subscriber(kind, "bench")] * count
            self.blast_case(f"{label}-{count}", kind, one, subs, 1 if count <= 10 else 2)
        apps = [PubSpec(proto, f"app{i:03d}", pub=i) for i in range(100)]
        filtered = [subscriber(kind, f"app{i:03d}", exact=True) for i in range(100)]
        self.blast_case(f"{label}-100-filtered", kind, apps, filtered, 2)

    def scenario_ingest(self) -> None:
        """4 publishers -> 1 and -> 10 subscribers, seed JSON and text; and 4 -> 1 for
        octet-counted RFC 5424 syslog and a streamed HTTP ``POST /publish``."""
        for proto in ("seed", "text"):
            self.ingest_cases("logio", proto, f"ingest-{proto}")
        for proto in ("syslog", "http"):
            pubs = [PubSpec(proto, "bench", pub=i, proc=f"p{i}") for i in range(4)]
            self.blast_case(f"ingest-{proto}-1", "logio", pubs, [subscriber("logio", "bench")], 1)

    def scenario_fanout(self) -> None:
        """The fan-out loads, 10 subscribers that each run a ``log=`` regex, and 10 that
        read JSON lines and server-sent events."""
        self.fanout_cases("logio", "seed", "fanout")
        logre = [SubSpec("http", "app=bench&log=" + quote("seq=[0-9]+ ts="))] * 10
        self.blast_case("fanout-10-log", "logio", [PubSpec("seed", "bench")], logre, 1)
        for form in ("json", "sse"):
            subs = [SubSpec("http", f"app=bench&format={form}")] * 10
            self.blast_case(f"fanout-10-{form}", "logio", [PubSpec("seed", "bench")], subs, 1)

    def scenario_peer(self) -> None:
        """The ingest and fan-out loads through redis-server and through nats-server."""
        for peer in ("redis", "nats"):
            self.ingest_cases(peer, peer, f"{peer}-ingest")
            self.fanout_cases(peer, peer, f"{peer}-fanout")

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

    def scenario_latency(self) -> None:
        """10k lines/s open loop to 10 and to 100 subscribers."""
        for count in (10, 100):
            self.case(f"latency-{count}", "logio", partial(self.latency_load, count=count))

    def scenario_stall(self) -> None:
        """The 10-subscriber latency run with one subscriber that stopped reading."""
        if "latency-10" not in self.results:
            self.case("latency-10", "logio", partial(self.latency_load, count=10))
        self.case("stall-10", "logio", partial(self.latency_load, count=10, stall=True))

    def scenario_idle(self) -> None:
        """Server memory per idle subscriber, then one line to prove they are all live."""
        count = self.settings.idle_count

        def body(server: Server) -> dict[str, Any]:
            before = server.memory()["rss_kb"]

            def measure() -> dict[str, Any]:
                time.sleep(1.0)
                after = server.memory()["rss_kb"]
                return {
                    "idle": {
                        "count": count,
                        "before_kb": before,
                        "after_kb": after,
                        "per_subscriber_kib": (after - before) / count,
                    }
                }

            subs = [SubSpec("http", "app=bench")] * count
            pubs = [[PubSpec("text", "bench")]]
            return self.load(
                server, pubs, split(subs, 2), rate=10.0, seconds=0.3, drain=30, before=measure
            )

        self.case(f"idle-{count}", "logio", body)
        self.case(
            f"idle-publishers-{count}",
            "logio",
            partial(self.idle_publishers, count=count),
        )

    def idle_publishers(self, server: Server, count: int) -> dict[str, Any]:
        """Server memory per idle publisher connection (its topic sent, then quiet),
        then one line from each, counted by the server, to prove they are all live."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < count + 256:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
        before = server.memory()["rss_kb"]
        socks: list[socket.socket] = []
        try:
            for i in range(count):
                sock = socket.create_connection(("127.0.0.1", server.pub_port))
                sock.sendall(b"app=idle&proc=p%d\n" % i)
                socks.append(sock)
            wait_metric(server, ("logio_publishers", ()), count)
            time.sleep(1.0)
            after = server.memory()["rss_kb"]
            for sock in socks:
                sock.sendall(b"probe\n")
            key = ("logio_records_in_total", (("protocol", "text"),))
            got = wait_metric(server, key, count)
        finally:
            for sock in socks:
                sock.close()
        return {
            "idle_publishers": {
                "count": count,
                "before_kb": before,
                "after_kb": after,
                "per_publisher_kib": (after - before) / count,
                "probes": got,
            }
        }

    def scenario_soak(self) -> None:
        """Zero loss and order at half capacity; exact drop counts for a slow reader."""
        settings = self.settings
        publishers = 20
        pubs = [PubSpec("seed", "soak", pub=i, proc=f"p{i:02d}") for i in range(publishers)]
        rate = settings.soak_rate
        if not rate:
            # Measured with the same sequence-checking subscribers as the soak,
            # which cost more per line than the counting ones.
            subs = [SubSpec("http", "app=soak", parse=True)] * 20
            self.blast_case("soak-capacity", "logio", pubs, subs, 2)
            capacity = self.results["soak-capacity"].get("deliveries_per_s", 0) / 20
            rate = 0.5 * capacity if capacity else 20_000.0
        per_pub = rate / publishers
        keepers = [SubSpec("http", "app=soak", parse=True)] * 19
        slow = SubSpec(
            "http", "app=soak", parse=True, throttle=rate * OUTPUT_LINE / 4, rcvbuf=16384
        )
        groups = split(keepers, 2) + [[slow]]

        def body(server: Server) -> dict[str, Any]:
            out = self.load(
                server,
                [pubs],
                groups,
                rate=per_pub,
                seconds=settings.soak_seconds,
                tick=0.002,
                drain=30,
                memory=True,
            )
            out["rate"] = rate
            return out

        self.case("soak", "logio", body)

    def replay_load(self, server: Server, count: int) -> dict[str, Any]:
        """Publish ``count`` lines, wait until history holds them all, then time
        ``?tail=count&follow=0`` in each format, ``replay_repeats`` times, in turn."""
        settings = self.settings
        publish_records(server.pub_port, PubSpec("seed", "bench", proc="replay"), count)
        deadline = time.monotonic() + 30
        while (held := server.metrics().get(("logio_history_records", ()), 0.0)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"history holds {held:g} of {count} records after 30 s")
            time.sleep(0.02)
        if held != count:
            raise RuntimeError(f"history holds {held:g} records, {count} were published")
        queries = {
            form: f"tail={count}&follow=0" + ("" if form == "text" else f"&format={form}")
            for form in REPLAY_FORMATS
        }
        repeats = settings.replay_repeats
        worker = Worker(fetch_replays, server.sub_port, list(queries.values()), repeats, count)
        try:
            runs = worker.wait("done", 60 + 30 * repeats * len(queries))
        finally:
            worker.close()
        metrics = server.metrics()
        replay = {form: replay_summary(runs[query], count) for form, query in queries.items()}
        return {
            "records": count,
            "repeats": repeats,
            "history_records": metrics.get(("logio_history_records", ())),
            "history_bytes": metrics.get(("logio_history_bytes", ())),
            "lines_dropped": {
                form: metrics.get(("logio_lines_dropped_total", (("format", form),)), 0.0)
                for form in queries
            },
            "replay": replay,
        }

    def scenario_store(self) -> None:
        """Ingest with ``--store`` beside the same load in memory only, and what the
        store takes on disk per record."""
        for proto in ("seed", "text"):
            pubs = [PubSpec(proto, "bench", pub=i, proc=f"p{i}") for i in range(4)]
            subs = [subscriber("logio", "bench")]
            if f"ingest-{proto}-1" not in self.results:
                self.blast_case(f"ingest-{proto}-1", "logio", pubs, subs, 1)
            folder = Path(tempfile.mkdtemp(prefix="logio-bench-store-"))
            name = f"store-ingest-{proto}-1"
            try:
                self.blast_case(name, "logio", pubs, subs, 1, ("--store", str(folder)))
                self.results[name].update(store_size(folder))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix="logio-bench-store-"))
        try:
            count = 1_000_000 if self.settings.quick else 5_000_000
            self.case(
                "store-search",
                "logio",
                partial(self.search_load, folder=folder, count=count),
                ("--store", str(folder)),
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def search_load(self, server: Server, folder: Path, count: int) -> dict[str, Any]:
        """Fill a store with ``count`` records, then time a ``log=`` search of all of
        them, the first result of ``since=5m``, and a restart on the store."""
        sock = socket.create_connection(("127.0.0.1", server.pub_port))
        sock.sendall(b"app=search\n")
        chunk = 10_000
        for first in range(0, count, chunk):
            sock.sendall(
                b"".join(
                    b"GET /api/items/%d 200 took %d ms\n" % (n, n % 97)
                    for n in range(first, first + chunk)
                )
            )
        sock.close()
        if wait_metric(server, ("logio_store_records", ()), count, timeout=600) < count:
            raise RuntimeError("the store did not get every record")
        out: dict[str, Any] = {"stored": count}
        started = time.monotonic()
        body = http_get(server.sub_port, "/?app=search&since=1d&follow=0&log=items/4242%20")
        out["search_s"] = time.monotonic() - started
        out["search_records_per_s"] = count / out["search_s"]
        out["search_matches"] = body.count(b"\n")
        started = time.monotonic()
        http_get(server.sub_port, "/?app=search&since=5m&follow=0", first=True)
        out["first_result_ms"] = (time.monotonic() - started) * 1000
        server.stop()
        out.update(store_size(folder))
        started = time.monotonic()
        again = start_logio(
            self.settings.out / "logs" / "store-restart.log",
            self.settings.python,
            [*self.settings.server_args, "--store", str(folder)],
        )
        try:
            http_get(again.sub_port, "/healthz")
            out["restart_s"] = time.monotonic() - started
        finally:
            again.stop()
        return out

    def scenario_replay(self) -> None:
        """History: how soon a ``follow=0`` replay of 10000 records starts and ends."""
        count = self.settings.replay_records
        self.case(f"replay-{count}", "logio", partial(self.replay_load, count=count))

    # -- the cluster --------------------------------------------------------------------

    def cluster_case(
        self,
        name: str,
        nodes: int,
        body: Callable[[Server, list[Server]], dict[str, Any]],
        shared: bool = True,
    ) -> None:
        """Start a redis-server and ``nodes`` cluster nodes of it (with ``shared``, on
        ports they all listen on, besides their own), run ``body(redis, nodes)``, stop
        them all, keep the result."""
        if self.bar is not None:
            self.bar.set_description(name)
        logs = self.settings.out / "logs"
        started = time.monotonic()
        result: dict[str, Any] = {"case": name, "server": "cluster", "nodes": nodes}
        servers: dict[str, Server] = {}
        try:
            redis = servers["redis"] = start_redis(logs / f"{name}-redis.log")
            url = f"redis://127.0.0.1:{redis.pub_port}/0"
            ports = (freePort(), freePort()) if shared and nodes > 1 else None
            members = []
            for label in NODE_LABELS[:nodes]:
                member = start_node(
                    logs / f"{name}-{label}.log",
                    self.settings.python,
                    self.settings.server_args,
                    url,
                    ports,
                )
                servers[f"node {label}"] = member
                members.append(member)
        except Exception as error:  # noqa: BLE001 - reported per case, the run goes on
            result["error"] = str(error)
        else:
            try:
                result.update(body(redis, members))
            except Exception as error:  # noqa: BLE001
                result["error"] = f"{type(error).__name__}: {error}"
                result["traceback"] = traceback.format_exc()
        alone = {
            label: ALONE.findall(server.log())
            for label, server in servers.items()
            if server.alive()
        }
        result["alone"] = {label: reasons for label, reasons in alone.items() if reasons}
        alive = {label: server.alive() for label, server in servers.items()}
        result["server_alive"] = all(alive.values())
        # The nodes first: a node that loses Redis says so in its log.
        for label, server in reversed(servers.items()):
            code = server.stop()
            if not alive[label]:
                result.setdefault("server_log_tails", {})[label] = server.log()[-1500:]
                result.setdefault("server_exits", {})[label] = code
        result["seconds"] = round(time.monotonic() - started, 1)
        self.results[name] = result
        if self.bar is not None:
            self.bar.update(1)
            if "error" in result:
                tqdm.write(f"{name}: {result['error'].splitlines()[0]}")

    def plain_case(self, name: str, body: Callable[[Server | None, list[Server]], Any]) -> None:
        """A cluster scenario's case on a plain server (no ``--cluster``, no Redis)."""
        self.case(name, "logio", lambda server: body(None, [server]))

    @staticmethod
    def watched(redis: Server | None, nodes: list[Server]) -> dict[str, int]:
        """The processes whose CPU a cluster case measures, by name."""
        if redis is None:
            return {"node": nodes[0].pid}
        names = [f"node {label}" for label in NODE_LABELS] if len(nodes) > 1 else ["node"]
        return {**dict(zip(names, (n.pid for n in nodes), strict=False)), "redis": redis.pid}

    def cluster_blast(self, redis: Server | None, nodes: list[Server], load: str) -> dict[str, Any]:
        """One of L{CLUSTER_LOADS} against the first node's (with two, the shared) ports,
        every subscriber's lines counted; then what each node took in and handed out."""
        pubs, count = CLUSTER_LOADS[load]
        subs = [subscriber("logio", "bench")] * count
        cpu = self.watched(redis, nodes)

        def probe() -> dict[str, float]:
            return {
                f"{label} {key}": value
                for label, node in zip(NODE_LABELS, nodes, strict=False)
                for key, value in node_counts(node).items()
            }

        out = self.load(nodes[0], [pubs], [subs], cpu=cpu, exact=True, drain=30, probe=probe)
        out["per_node"] = [node_counts(node) for node in nodes]
        return out

    def cluster_latency(self, redis: Server | None, nodes: list[Server]) -> dict[str, Any]:
        """The 10-subscriber latency load: published on the first node and read on the
        last (the same one but with two nodes); with Redis, its memory per record."""
        first, last = nodes[0], nodes[-1]
        cpu = self.watched(redis, nodes)
        if redis is None:
            return self.latency_load(first, 10, cpu=cpu)
        memory = redis_memory(redis.pub_port)
        out = self.latency_load(
            first, 10, pub_port=first.own_pub_port, sub_port=last.own_sub_port, cpu=cpu
        )
        out["redis"] = stream_memory(redis, memory, out["published"])
        out["per_node"] = [node_counts(node) for node in nodes]
        return out

    def cost_plain(self, redis: Server | None, nodes: list[Server]) -> dict[str, Any]:
        """A plain server's CPU time per record: taking records in with no subscriber,
        then with one subscriber that gets them all."""
        server = nodes[0]
        count = max(1, self.settings.cost_records // COST_BLOCK) * COST_BLOCK
        alone = self.relay_count(server.pub_port, 0, count, {"node": server.pid})
        served = self.relay_count(server.pub_port, server.sub_port, count, {"node": server.pid})
        return {"records": count, "no_subscriber": alone, "one_subscriber": served}

    def cost_cluster(self, redis: Server | None, nodes: list[Server]) -> dict[str, Any]:
        """Records published on node A, which has no subscriber, and read on node B by
        one subscriber: each node's and Redis's CPU time per record, and Redis's memory
        per record kept in the stream."""
        assert redis is not None
        a, b = nodes
        count = max(1, self.settings.cost_records // COST_BLOCK) * COST_BLOCK
        memory = redis_memory(redis.pub_port)
        watched = {"node A": a.pid, "node B": b.pid, "redis": redis.pid}
        out = self.relay_count(a.own_pub_port, b.own_sub_port, count, watched)
        out["redis"] = stream_memory(redis, memory, count)
        out["records"] = count
        out["per_node"] = [node_counts(node) for node in nodes]
        return out

    def relay_count(
        self, pub_port: int, sub_port: int, count: int, watched: dict[str, int]
    ) -> dict[str, Any]:
        """Publish ``count`` records on one connection to ``pub_port`` as fast as the
        server reads them; with ``sub_port``, until one subscriber there got them all.
        The CPU microseconds per record each watched process used meanwhile."""
        worker = None
        try:
            if sub_port:
                worker = Worker(subscribe, sub_port, [SubSpec("http", "app=cost")])
                ready = worker.wait("ready", 30)
                if ready["failed"]:
                    raise RuntimeError(f"the subscriber failed to connect: {ready['failed']}")
                now = time.monotonic()
                worker.send(Plan(now, (now, now), now, now + 600, exact=True))
            before = {name: cpu_seconds(pid) for name, pid in watched.items()}
            started = time.monotonic()
            send_blocks(pub_port, count)
            lines = dropped = None
            if worker is not None:
                worker.send(("expect", {0: count}))
                stream = worker.wait("done", 600)["streams"][0]
                lines, dropped = stream["lines"], stream["dropped"]
            seconds = time.monotonic() - started
            # The publishing node reads its own entries back: let it finish.
            time.sleep(0.5)
            used = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
        finally:
            if worker is not None:
                worker.close()
        return {
            "cpu_us": {name: 1e6 * cpu / count for name, cpu in used.items()},
            "seconds": seconds,
            "lines": lines,
            "dropped": dropped,
        }

    def scenario_cluster(self) -> None:
        """1 node and 2 nodes sharing their ports beside a plain server; latency across
        nodes; what a relayed record costs. See the module's docstring."""
        for load in CLUSTER_LOADS:
            blast = partial(self.cluster_blast, load=load)
            self.plain_case(f"cluster-{load}-plain", blast)
            self.cluster_case(f"cluster-{load}-1node", 1, blast)
            self.cluster_case(f"cluster-{load}-2nodes", 2, blast)
        self.plain_case("cluster-latency-10-plain", self.cluster_latency)
        self.cluster_case("cluster-latency-10-1node", 1, self.cluster_latency)
        self.cluster_case("cluster-latency-10-cross", 2, self.cluster_latency, shared=False)
        self.plain_case("cluster-cost-plain", self.cost_plain)
        self.cluster_case("cluster-cost", 2, self.cost_cluster, shared=False)


def node_counts(server: Server) -> dict[str, float]:
    """What a server took in from its publishers and handed its subscribers so far, and
    a cluster node's link's figures (``logio_cluster_*`` as ``cluster_*``: records
    relayed in and out, unrelayed, missed)."""
    metrics = server.metrics()

    def total(name: str) -> float:
        return sum(value for (sample, _), value in metrics.items() if sample == name)

    out = {
        "records_in": total("logio_records_in_total"),
        "lines_out": total("logio_lines_out_total"),
    }
    for (sample, _), value in metrics.items():
        if sample.startswith("logio_cluster_"):
            key = sample.removeprefix("logio_").removesuffix("_total")
            out[key] = out.get(key, 0.0) + value
    return out


def stream_memory(redis: Server, before: int, records: int) -> dict[str, Any]:
    """The cluster's stream in Redis: its entries, records per entry, and how much
    ``used_memory`` grew per record since it was ``before``."""
    grown = redis_memory(redis.pub_port) - before
    entries = int(redis_call(redis.pub_port, "XLEN", STREAM))
    return {
        "records": records,
        "entries": entries,
        "records_per_entry": records / entries if entries else None,
        "memory_growth": grown,
        "bytes_per_record": grown / records if records else None,
    }


def send_blocks(port: int, count: int) -> None:
    """Publish ``count`` seed records (``app=cost``) on one connection, a block of
    L{COST_BLOCK} sent again and again; close it and wait until the server has read it
    all and closed its side."""
    block = blast_buffer("seed", 0, COST_BLOCK)
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.sendall(logio_topic("seed", "cost", "p", "h"))
        for _ in range(count // COST_BLOCK):
            sock.sendall(block)
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(4096)
    if answer:
        raise RuntimeError(f"the server answered the publisher: {answer[:200]!r}")


def wait_metric(server: Server, key: Any, least: float, timeout: float = 120.0) -> float:
    """Wait until the server's metric ``key`` is at least ``least``; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = server.metrics().get(key, 0)
        if value >= least or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def http_get(port: int, path: str, first: bool = False) -> bytes:
    """GET ``path`` on ``port``: the whole body, or with ``first`` its first bytes."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.read(1) if first else response.read()
    finally:
        connection.close()


def store_size(folder: Path) -> dict[str, Any]:
    """The records in a stopped server's store, and its bytes on disk per record."""
    database = folder / "logio.sqlite3"
    connection = sqlite3.connect(database)
    try:
        records = connection.execute("SELECT COALESCE(SUM(count), 0) FROM batches").fetchone()[0]
    finally:
        connection.close()
    size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
    return {"stored": records, "disk_bytes_per_record": size / records if records else None}


def replay_summary(runs: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    """The median times of a format's replay runs, and how many runs were complete:
    exactly ``expected`` lines, in order, no notice, and the response ended."""

    def median(key: str) -> float:
        values = [r[key] for r in runs if r[key] is not None]
        return float(np.median(values)) if values else float("nan")

    complete = [
        not r["error"]
        and r["ended"]
        and r["lines"] == r["parsed"] == expected
        and r["missing"] == r["reordered"] == r["unparsed"] == r["notices"] == 0
        for r in runs
    ]
    return {
        "first_ms": median("first_ms"),
        "last_ms": median("last_ms"),
        "end_ms": median("end_ms"),
        "complete": sum(complete),
        "runs": runs,
    }
