"""The ``amplified`` scenario: a load whose output is far bigger than its input, and
nobody reads it.

logio runs with ``--buffer-bytes 1048576``. 4 publishers on one topic whose app, proc and
host are each 256 characters long (the longest a topic field may be,
``logio.fields.MAX_TOPIC_FIELD``) send empty lines as fast as the server reads them, 64 KiB
of them (``b"\\n" * 65536``) per write, in the text protocol; every empty line becomes an
output line of about 800 bytes (stamp and topic). 20 subscribers to the app never read
after their response headers, with a small receive buffer (4 KiB). Figures: the server's
peak memory (its resident set sampled every 50 ms, and the kernel's high-water mark) and
its CPU seconds per MiB of input in the measuring window (its input counted by its own
``/metrics``). Target: a peak under 120 MB.
"""

from __future__ import annotations

import selectors
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from .cluster import node_counts
from .harness import Harness, Worker
from .procs import Server
from .wire import logio_topic
from .workers import Plan, PubSpec, SubSpec, guarded

FIELD = 256
"""Characters of each topic field: ``logio.fields.MAX_TOPIC_FIELD``."""
APP = "amplified".ljust(FIELD, "a")
PROC = "p".ljust(FIELD - 1, "r")
HOST = "h".ljust(FIELD, "o")
WRITE = 65536
"""Empty lines (bytes) per write."""
BUFFER_BYTES = 1048576
STALLED = 20
PUBLISHERS = 4
PEAK_TARGET_MB = 120.0
"""Peak resident memory at most this many MB (10^6 bytes)."""


def publish_blank(conn: Connection, port: int, specs: list[PubSpec]) -> None:
    """Worker: publishers ``specs`` (text protocol) send writes of L{WRITE} empty lines as
    fast as the server reads them, from the plan's start to its stop."""
    guarded(conn, _publish_blank, port, specs)


def _publish_blank(conn: Connection, port: int, specs: list[PubSpec]) -> None:
    socks = []
    for spec in specs:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(logio_topic("text", spec.app, spec.proc, spec.host))
        sock.setblocking(False)
        socks.append(sock)
    conn.send(("ready", {"publishers": len(socks)}))
    plan: Plan = conn.recv()
    block = memoryview(b"\n" * WRITE)
    sent = dict.fromkeys(range(len(socks)), 0)
    offsets = dict.fromkeys(range(len(socks)), 0)
    with selectors.DefaultSelector() as sel:
        for index, sock in enumerate(socks):
            sel.register(sock, selectors.EVENT_WRITE, index)
        time.sleep(max(0.0, plan.start - time.monotonic()))
        while time.monotonic() < plan.stop:
            for key, _ in sel.select(0.05):
                index = key.data
                try:
                    written = socks[index].send(block[offsets[index] :])
                except BlockingIOError:
                    continue
                sent[index] += written
                offsets[index] = (offsets[index] + written) % WRITE
    for sock in socks:
        sock.close()
    # Every byte is a line: what was written of a block is whole lines.
    published = {spec.pub: sent[index] for index, spec in enumerate(specs)}
    conn.send(("done", {"published": published}))


def blank_worker(port: int, group: list[PubSpec]) -> Worker:
    """The worker of a group of blank-line publishers."""
    return Worker(publish_blank, port, group)


class AmplifiedLoads(Harness):
    """The amplified scenario's case."""

    def scenario_amplified(self) -> None:
        """Empty lines on a long topic to stalled subscribers, ``--buffer-bytes 1 MiB``."""
        self.case(
            "amplified-20-stalled",
            "logio",
            self.amplified_load,
            ("--buffer-bytes", str(BUFFER_BYTES)),
        )

    def amplified_load(self, server: Server) -> dict[str, Any]:
        """Blast empty lines at the server; its peak memory and CPU per input MiB."""
        pubs = [PubSpec("text", APP, pub=i, proc=PROC, host=HOST) for i in range(PUBLISHERS)]
        stalled = [SubSpec("http", "app=^amplified", stall=True, rcvbuf=4096)] * STALLED

        def probe() -> dict[str, float]:
            return node_counts(server)

        out = self.load(
            server,
            [pubs],
            [stalled],
            memory=True,
            cpu={"server": server.pid},
            probe=probe,
            publisher=blank_worker,
        )
        cpu = out.get("cpu", {}).get("server")
        lines_in = out.get("window_rates", {}).get("records_in")
        memory = out["memory"]
        out["amplified"] = {
            "topic_field": FIELD,
            "buffer_bytes": BUFFER_BYTES,
            "input_mib_per_s": lines_in / 2**20 if lines_in else None,
            "cpu_s_per_input_mib": (cpu / 100) / (lines_in / 2**20) if cpu and lines_in else None,
            "peak_mb": max(memory["peak_kb"], memory["hwm_kb"]) * 1024 / 1e6,
            "lines_dropped": lines_dropped(server),
        }
        return out


def lines_dropped(server: Server) -> float | None:
    """The output lines the server dropped for its subscribers (its ``/metrics``)."""
    try:
        metrics = server.metrics()
    except (OSError, RuntimeError):
        return None
    return sum(value for (name, _), value in metrics.items() if name == "logio_lines_dropped_total")
