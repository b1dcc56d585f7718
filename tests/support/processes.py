"""
Subprocesses: Python and the C{logio} command running this checkout's code
(not an installed copy), C{curl}, and stopping and measuring a process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.waiting import TIMEOUT, waitFor

#: This checkout: subprocesses run its code, not an installed copy.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def environment(**variables: str | None) -> dict[str, str]:
    """
    This process's environment with this checkout first on the path, the
    given variables set, and those given as C{None} removed.  So a
    subprocess (twistd too: Twisted finds C{twisted/plugins/} on the path)
    runs the working tree, edits and all, not what was last installed.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    for key, value in variables.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def runPython(
    code: str, timeout: float = 30, stdin: bytes = b"", **variables: str | None
) -> subprocess.CompletedProcess[bytes]:
    """
    Run C{code} in a new Python with L{environment}; wait for it.
    """
    return subprocess.run(
        [sys.executable, "-c", code],
        input=stdin,
        capture_output=True,
        env=environment(**variables),
        timeout=timeout,
    )


def logio(*args: str) -> list[str]:
    """
    The command line that runs this checkout's C{logio} command.
    """
    return [sys.executable, "-m", "logio.client.cli", *args]


def pub(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """
    Run C{logio pub ARGS} with C{stdin}; wait for it.
    """
    return subprocess.run(
        logio("pub", *args), input=stdin, capture_output=True, env=environment(), timeout=30
    )


class Running:
    """
    A subprocess whose output is collected as it comes.
    """

    def __init__(self, testCase: SynchronousTestCase, args: list[str], **popen: object) -> None:
        popen.setdefault("stdin", subprocess.DEVNULL)
        self.process = subprocess.Popen(
            args,
            stderr=subprocess.PIPE,
            env=environment(),
            **popen,  # type: ignore[call-overload]
        )
        testCase.addCleanup(self.kill)
        self.err = b""
        self.out = b""
        names = ["err"] if self.process.stdout is None else ["err", "out"]
        self._collectors = [
            threading.Thread(target=self._collect, args=(name,), daemon=True) for name in names
        ]
        for thread in self._collectors:
            thread.start()

    def _collect(self, name: str) -> None:
        stream = getattr(self.process, f"std{name}")
        while data := stream.read1(65536):
            setattr(self, name, getattr(self, name) + data)

    def waitOut(self, text: bytes) -> None:
        """
        Wait until standard output holds C{text}.
        """
        waitFor(lambda: text in self.out, what=f"{text!r} on stdout; got {self.out!r}")

    def waitErr(self, text: bytes) -> None:
        """
        Wait until standard error holds C{text}.
        """
        waitFor(lambda: text in self.err, what=f"{text!r} on stderr; got {self.err!r}")

    def wait(self, timeout: float = 20) -> int:
        """
        Wait for the exit status and for the end of the output collected.
        """
        status = self.process.wait(timeout)
        for thread in self._collectors:
            thread.join(timeout)
        return status

    def interrupt(self) -> int:
        """
        Press Ctrl-C (SIGINT) and wait for the exit status.
        """
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(20)

    def kill(self) -> None:
        """
        Kill the process unless it has exited, and reap it.
        """
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def curl() -> str:
    """
    The path of C{curl}; skip the test if it is not installed.
    """
    found = shutil.which("curl")
    if found is None:
        raise SkipTest("curl is not installed")
    return found


def runCurl(*args: str) -> tuple[int, str]:
    """
    Run curl to the end: the HTTP status it printed last, and the body.
    """
    result = subprocess.run(
        [curl(), "-s", "-w", "\n%{http_code}", *args],
        capture_output=True,
        timeout=TIMEOUT,
    )
    body, _, code = result.stdout.decode("utf-8", "replace").rpartition("\n")
    return int(code or 0), body.removesuffix("\n")


def terminate(process: subprocess.Popen[bytes], timeout: float = TIMEOUT) -> int:
    """
    SIGTERM C{process} unless it has exited, and wait for it, killing it if
    it outlives C{timeout} seconds; return its exit status.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def procStatus(pid: int) -> dict[str, int]:
    """
    The kB figures of C{/proc/PID/status} (C{VmRSS}, C{VmHWM}, ...).
    """
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if value.strip().endswith(" kB"):
                out[name] = int(value.split()[0])
    return out
