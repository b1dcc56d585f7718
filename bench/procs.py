"""The servers under test, their memory, and profiling them.

Starts ``twistd -n logio`` (this checkout's code, as the end-to-end tests run it) or
``redis-server`` as a subprocess listening only on free 127.0.0.1 ports, waits until it
listens, reads its memory from ``/proc/PID/status`` and stops it, with the helpers of
``tests.support``. ``py-spy`` can sample the server while a load runs.
"""

from __future__ import annotations

import collections
import http.client
import os
import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tests.support.metrics import SampleKey, parseMetrics
from tests.support.ports import freePort
from tests.support.processes import environment, procStatus, terminate
from tests.support.server import listening, logioArguments, portOf, twistd
from tests.support.waiting import waitFor


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
        """logio's ``GET /metrics`` on the subscriber port: each sample's value by its
        name and sorted labels (``("logio_history_records", ())``, ...)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.sub_port, timeout=timeout)
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


def redis_version() -> str:
    """The redis-server version string."""
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\S+)", out)
    return found.group(1) if found else out.strip()


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
