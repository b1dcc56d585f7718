"""The servers under test, their memory and CPU time, and profiling them.

Starts ``twistd -n logio`` (this checkout's code, as the end-to-end tests run it),
``redis-server`` or ``nats-server`` as a subprocess listening only on free 127.0.0.1 ports,
waits until it listens, reads its memory from ``/proc/PID/status`` and its CPU time from
``/proc/PID/stat``, and stops it, with the helpers of ``tests.support``. Cluster nodes
(``--cluster``) can share their ports and each listen on ports of its own as well.
``py-spy`` can sample the server while a load runs.
"""

from __future__ import annotations

import collections
import http.client
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from tests.support.metrics import SampleKey, parseMetrics
from tests.support.ports import freePort
from tests.support.processes import environment, procStatus, terminate
from tests.support.server import listening, logioArguments, portOf, twistd
from tests.support.waiting import waitFor

from .wire import redis_command


def twistd_command(python: str | None) -> list[str]:
    """How to run twistd: the one installed beside this Python, or ``python``'s module."""
    if python:
        return [python, "-c", "from twisted.scripts.twistd import run; run()"]
    return [twistd()]


class Server:
    """A server process under test, listening for publishers and subscribers."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        ready: Callable[[str], tuple[int, int] | None],
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start ``argv`` with its output in ``log_path``; wait until ``ready`` finds the
        publisher and subscriber ports in its log."""
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        self.pid = self.proc.pid
        try:
            ports = waitFor(
                lambda: self.proc.poll() is not None or ready(self.log()), 30, f"{name} to start"
            )
        except AssertionError:
            ports = None
        if not isinstance(ports, tuple):
            self.stop()
            raise RuntimeError(f"{name} did not start; its log ends:\n{self.log()[-2000:]}")
        self.pub_port, self.sub_port = ports
        self.own_pub_port, self.own_sub_port = ports
        """Ports only this server listens on (a cluster node's shared ports aside)."""

    def log(self) -> str:
        """Everything the server has logged so far."""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """Whether the server process still runs."""
        return self.proc.poll() is None

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM in kB."""
        status = procStatus(self.pid)
        return {"rss_kb": status.get("VmRSS", 0), "hwm_kb": status.get("VmHWM", 0)}

    def metrics(self, timeout: float = 10.0) -> dict[SampleKey, float]:
        """logio's ``GET /metrics`` on its own subscriber port: each sample's value by
        its name and sorted labels (``("logio_history_records", ())``, ...)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.own_sub_port, timeout=timeout)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            body = response.read().decode()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"GET /metrics: HTTP status {response.status}")
        return parseMetrics(body)

    def stop(self) -> int:
        """Stop the server (SIGTERM, then SIGKILL) and return its exit code."""
        code = terminate(self.proc, 10)
        self._log.close()
        return code


def logio_ports(log: str) -> tuple[int, int] | None:
    """The publisher and subscriber ports a logio log says it listens on, once it says both."""
    addresses = listening(log)
    if addresses is None:
        return None
    return portOf(addresses["publishers"][0]), portOf(addresses["subscribers"][0])


def start_logio(log_path: Path, python: str | None, extra: list[str]) -> Server:
    """Start ``twistd -n logio`` from this checkout on free loopback ports."""
    argv = twistd_command(python) + logioArguments(*extra)
    return Server("logio", argv, logio_ports, log_path, environment())


def start_node(
    log_path: Path,
    python: str | None,
    extra: list[str],
    cluster: str,
    shared: tuple[int, int] | None = None,
) -> Server:
    """Start a cluster node (``--cluster cluster``) and wait until it has joined.

    With ``shared`` (publisher and subscriber ports) it listens there, where other nodes
    started with the same ports listen too (SO_REUSEPORT), and on free ports of its own,
    ``own_pub_port`` and ``own_sub_port``: its ``/metrics``, and loads meant for this one
    node. Without, it listens on free ports of its own only.
    """
    own = (freePort(), freePort())
    listeners: list[str] = []
    for option, ports in (("--publish", 0), ("--subscribe", 1)):
        if shared is not None:
            listeners += [option, f"tcp:{shared[ports]}:interface=127.0.0.1"]
        listeners += [option, f"tcp:{own[ports]}:interface=127.0.0.1"]
    argv = twistd_command(python) + logioArguments(*extra, "--cluster", cluster, *listeners)

    def ready(log: str) -> tuple[int, int] | None:
        ports = logio_ports(log)
        return ports if ports is not None and ": joined as " in log else None

    server = Server("logio node", argv, ready, log_path, environment())
    server.own_pub_port, server.own_sub_port = own
    return server


def start_redis(log_path: Path) -> Server:
    """Start Debian's redis-server on a free loopback port, persistence off."""
    port = freePort()
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
    ]

    def ready(log: str) -> tuple[int, int] | None:
        return (port, port) if "Ready to accept connections" in log else None

    return Server("redis", argv, ready, log_path)


def start_nats(log_path: Path) -> Server:
    """Start Debian's nats-server on a free loopback port (no monitoring, no cluster),
    its own defaults otherwise: 64 MiB pending per slow consumer, 1 MiB payloads."""
    port = freePort()
    argv = ["nats-server", "--addr", "127.0.0.1", "--port", str(port)]

    def ready(log: str) -> tuple[int, int] | None:
        return (port, port) if "Server is ready" in log else None

    return Server("nats", argv, ready, log_path)


def nats_version() -> str:
    """The nats-server version string."""
    out = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout
    return out.strip().rpartition(" ")[2] or out.strip()


def redis_version() -> str:
    """The redis-server version string."""
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\S+)", out)
    return found.group(1) if found else out.strip()


class RedisError(Exception):
    """An error reply from Redis."""


def redis_call(port: int, *args: str, timeout: float = 10.0) -> Any:
    """One command to the redis-server on ``port``: its reply (a simple or bulk string
    as bytes, an integer, or None); raises L{RedisError} for an error reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(redis_command(*(arg.encode() for arg in args)))
        reply = sock.makefile("rb")
        head = reply.readline()
        kind, rest = head[:1], head[1:].rstrip(b"\r\n")
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else reply.read(size + 2)[:size]
        raise RedisError(f"a reply the benchmark does not read: {head[:80]!r}")


def redis_memory(port: int) -> int:
    """``used_memory`` of ``INFO memory``: bytes Redis's allocator holds."""
    info = redis_call(port, "INFO", "memory")
    found = re.search(rb"^used_memory:(\d+)", info, re.MULTILINE)
    if not found:
        raise RedisError("INFO memory has no used_memory")
    return int(found.group(1))


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time a process has used (all its threads), in seconds:
    ``utime + stime`` of ``/proc/PID/stat``, counted in clock ticks (10 ms)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        text = stat.read()
    # The fields after the command name (in parentheses, which may hold anything):
    # state is field 3, utime 14 and stime 15.
    fields = text[text.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def box_busy_seconds() -> float:
    """CPU seconds all the machine's cores have been busy (not idle nor waiting for
    I/O) since boot, from the first line of ``/proc/stat``."""
    with open("/proc/stat", "rb") as stat:
        fields = [int(n) for n in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    # guest and guest_nice (fields 9 and 10) are counted in user and nice already.
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def cpu_total(pids: Iterable[int]) -> float | None:
    """The CPU seconds of processes together, or None if one has gone."""
    try:
        return sum(cpu_seconds(pid) for pid in pids)
    except (OSError, ValueError, IndexError):
        return None


class CpuWindow(threading.Thread):
    """The CPU % of groups of processes between two instants of the monotonic clock
    (a load's throughput window): their CPU time then, divided by the time between.
    100 % is one core busy; a group's processes add up. ``box`` is the whole machine's
    (all its cores busy: 100 % times their count): what the groups leave of it is the
    kernel's own work (loopback traffic partly) and other processes'.

    ``probe``, if given, is read at both ends too (counters, such as a server's
    ``/metrics``): ``rates`` are how fast each of its figures grew between the two
    readings."""

    def __init__(
        self,
        groups: dict[str, list[int]],
        start: float,
        stop: float,
        probe: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.groups = groups
        self.start_at = start
        self.stop_at = stop
        self.probe = probe
        self.percent: dict[str, float | None] = {}
        self.rates: dict[str, float] = {}
        self.error = ""

    def run(self) -> None:
        time.sleep(max(0.0, self.start_at - time.monotonic()))
        began = time.monotonic()
        box = box_busy_seconds()
        first = {name: cpu_total(pids) for name, pids in self.groups.items()}
        probed = self._probe()
        time.sleep(max(0.0, self.stop_at - time.monotonic()))
        ended = time.monotonic()
        box = box_busy_seconds() - box
        for name, pids in self.groups.items():
            used, before = cpu_total(pids), first[name]
            if used is None or before is None or ended <= began:
                self.percent[name] = None
            else:
                self.percent[name] = 100 * (used - before) / (ended - began)
        if ended > began:
            self.percent["box"] = 100 * box / (ended - began)
        if probed is not None:
            again = self._probe()
            if again is not None and again[0] > probed[0]:
                span = again[0] - probed[0]
                self.rates = {
                    key: (value - probed[1].get(key, 0.0)) / span for key, value in again[1].items()
                }

    def _probe(self) -> tuple[float, dict[str, float]] | None:
        """The probe's figures and when it returned, or None (and why, in ``error``)."""
        if self.probe is None:
            return None
        try:
            figures = self.probe()
        except Exception as error:  # noqa: BLE001 - a figure missing, not the run
            self.error = f"{type(error).__name__}: {error}"
            return None
        return time.monotonic(), figures

    def finish(self) -> dict[str, float | None]:
        """Wait for the window's end; the CPU % of each group."""
        self.join()
        return self.percent


class MemorySampler(threading.Thread):
    """Samples a server's VmRSS every ``interval`` seconds until stopped."""

    def __init__(self, server: Server, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.interval = interval
        self.baseline = server.memory()["rss_kb"]
        self.peak = self.baseline
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.peak = max(self.peak, self.server.memory()["rss_kb"])
            except OSError:
                return

    def finish(self) -> dict[str, int]:
        """Stop sampling; the baseline, peak and growth in kB (and VmHWM)."""
        self._stop_event.set()
        self.join()
        memory = self.server.memory() if self.server.alive() else {"rss_kb": 0, "hwm_kb": 0}
        return {
            "baseline_kb": self.baseline,
            "peak_kb": self.peak,
            "growth_kb": self.peak - self.baseline,
            "hwm_kb": memory["hwm_kb"],
        }


class Profiler:
    """``py-spy record`` of a server process, in collapsed-stack (raw) format."""

    def __init__(self, pid: int, seconds: float, out: Path) -> None:
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = ["py-spy", "record", "--pid", str(pid), "--duration", str(max(1, int(seconds)))]
        argv += ["--rate", "250", "--nonblocking", "--idle", "--format", "raw", "-o", str(out)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def finish(self, top: int = 12) -> dict[str, object]:
        """Wait for py-spy and summarise: the functions with the most samples, by self
        time (the sampled frame) and by inclusive time (anywhere on the stack)."""
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            return {"error": err.decode(errors="replace")[-500:]}
        return summarise_stacks(self.out.read_text(), top)


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    short = "/".join(path.split("/")[-2:]) if "site-packages" in path else os.path.basename(path)
    return f"{match['func']} ({short})"


def summarise_stacks(collapsed: str, top: int) -> dict[str, object]:
    """Self and inclusive shares per function from collapsed stacks (``a;b;c N``)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    if not total:
        return {"samples": 0}

    def shares(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    # The frames on (nearly) every stack -- twistd, the reactor loop -- say nothing.
    for name, n in list(inclusive.items()):
        if n >= 0.95 * total:
            del inclusive[name]
    return {"samples": total, "self": shares(own), "inclusive": shares(inclusive)}
