"""The benchmark scenarios: each case starts a fresh server, runs one bounded load from
separate worker processes, and returns a result dict.

Scenarios (the names ``--scenario`` takes):

- ``ingest``: 4 publishers -> 1 and -> 10 subscribers, seed JSON and text protocol.
- ``fanout``: 1 publisher -> 10 and -> 100 subscribers with the same filter; 100
  publishers on 100 apps -> 100 subscribers with 100 different app filters; 10
  subscribers with a ``log=`` regex, to show what per-record regexes cost; and 10
  subscribers reading ``format=json`` and ``format=sse``.
- ``latency``: open-loop 10k lines/s for 10 s to 10 and to 100 subscribers, five runs in
  a row (two with ``--quick``), every run's p99 reported.
- ``stall``: the 10-subscriber latency run plus one subscriber that never reads.
- ``idle``: server memory per idle subscriber with 10000 connected.
- ``peer``: the ingest and fan-out loads through redis-server (PUBLISH / PSUBSCRIBE) and
  nats-server (PUB / SUB).
- ``users``: the loads users have (L{bench.users}): 1,000 small publishers at 20 and at
  100 lines/s each; 1,000 subscribers to 1,000 apps; line sizes from 50 B to 16 KiB;
  each through logio and through nats-server.
- ``amplified``: empty lines on a topic of 256-character fields to 20 subscribers that
  never read, ``--buffer-bytes 1 MiB`` (L{bench.amplified}): the server's peak memory
  and CPU per input MiB.
- ``scaling``: deliveries/s against 1, 10, 100 and 1,000 subscribers (1 publisher) and
  against as many publishers (1 subscriber), for logio, redis-server and nats-server
  (L{bench.scaling}): curves in the chart.
- ``soak``: 20 publishers at half the measured capacity -> 19 subscribers that must see
  every line in order, and 1 throttled subscriber whose drop notices must add up.
- ``store``: seed JSON and text ingest -> 1 subscriber with ``--store`` in a fresh
  folder, beside the same loads in memory only, and the store's bytes on disk per
  record.
- ``replay``: 10000 records published into the server's history, then
  ``?tail=10000&follow=0`` in text, JSON and SSE timed to the first and the last line,
  each run checked for every line in order.
- ``cluster`` (not in the default set; ``--scenario cluster``): see L{bench.cluster}.

The harness they run on (a fresh server per case, worker processes, aggregation) is
L{bench.harness}.
"""

from __future__ import annotations

import http.client
import resource
import shutil
import socket
import sqlite3
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from .amplified import AmplifiedLoads
from .cluster import CLUSTER_LOADS, ClusterLoads
from .harness import Settings, Worker, split, subscriber, wait_metric
from .procs import (
    Server,
    start_logio,
)
from .replays import fetch_replays, publish_records
from .scaling import ScalingLoads
from .users import UserLoads
from .workers import PubSpec, SubSpec

DEFAULT_SCENARIOS = (
    "ingest",
    "fanout",
    "replay",
    "latency",
    "stall",
    "idle",
    "peer",
    "users",
    "amplified",
    "scaling",
    "soak",
    "store",
)
"""What ``python -m bench`` runs without ``--scenario``."""
SCENARIOS = (*DEFAULT_SCENARIOS, "cluster")
REPLAY_FORMATS = ("text", "json", "sse")
OUTPUT_LINE = 137
"""Approximate bytes of one logio output line, only to size the slow reader's throttle."""


def latency_run_name(count: int, run: int) -> str:
    """The case of a latency load's ``run``-th run to ``count`` subscribers."""
    return f"latency-{count}" if run == 1 else f"latency-{count}-run{run}"


class Bench(ClusterLoads, UserLoads, AmplifiedLoads, ScalingLoads):
    """Runs the selected scenarios and collects one result dict per case."""

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
            "latency": 2 * settings.latency_runs,
            "stall": 1,
            "idle": 2,
            "peer": 10,
            "users": UserLoads.users_case_count(),
            "amplified": 1,
            "scaling": ScalingLoads.scaling_case_count(),
            "soak": 2 if not settings.soak_rate else 1,
            "store": 5,
            "cluster": 3 * len(CLUSTER_LOADS) + 3 + 2,
        }[scenario]

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

    def scenario_latency(self) -> None:
        """10k lines/s open loop to 10 and to 100 subscribers, the pair run again and
        again (``latency_runs`` times in a row): ``latency-N``, then ``latency-N-run2``..."""
        for run in range(1, self.settings.latency_runs + 1):
            for count in (10, 100):
                name = latency_run_name(count, run)
                self.case(name, "logio", partial(self.latency_load, count=count))
                self.results[name]["run"] = run

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
