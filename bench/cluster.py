"""The ``cluster`` scenario (not in the default set; ``--scenario cluster``): nodes started
with ``--cluster`` on a redis-server of their own. Seed and text ingest (4 publishers -> 1
subscriber) and fan-out (1 -> 10) on a plain server, on one node and on two nodes sharing
their ports, each with the CPU % of every process and every subscriber's count checked
against what was published; the 10k lines/s latency load on a plain server, on one node,
and published on one node and read on another; and what one relayed record costs: CPU time
of a node that only publishes and of one that only delivers, beside a plain server, and
Redis's memory per record in the stream.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from tests.support.ports import freePort

from .harness import Harness, Worker, run_body, subscriber
from .procs import (
    Server,
    cpu_seconds,
    redis_call,
    redis_memory,
    start_node,
    start_redis,
)
from .wire import blast_buffer, logio_topic
from .workers import Plan, PubSpec, SubSpec, subscribe

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


class ClusterLoads(Harness):
    """The cluster scenario's cases."""

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
            run_body(result, body, redis, members)
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
        self.keep(name, result, started)

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
