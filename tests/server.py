"""
End-to-end helpers: a real C{twistd -n logio} subprocess on free ports, and
a small blocking HTTP client that reads a chunked subscription stream.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Callable, Sequence

from twisted.trial.unittest import SynchronousTestCase

TIMEOUT = 20.0
#: This checkout: subprocesses run its code, not an installed copy.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LISTENING = re.compile(rb"Listening for (publishers|subscribers) on (\S+) (\S+)")


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


def twistd() -> str:
    """
    The installed C{twistd} next to this Python, else the one on C{PATH}.
    """
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    return beside if os.path.exists(beside) else (shutil.which("twistd") or "twistd")


def waitFor(
    condition: Callable[[], object], timeout: float = TIMEOUT, what: str = "a condition"
) -> object:
    """
    Poll C{condition} until it returns something true; fail after
    C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def socketPath(testCase: SynchronousTestCase, name: str) -> str:
    """
    A path for a UNIX socket named C{name} in a fresh short-lived directory
    under the system temp directory, removed when the test ends.

    Trial's own temp directory can sit too deep for C{AF_UNIX}, whose paths
    are limited to 107 bytes on Linux (CI checks out under a longer path).
    """
    directory = tempfile.mkdtemp(prefix="logio-")
    testCase.addCleanup(shutil.rmtree, directory, ignore_errors=True)
    return os.path.join(directory, name)


class Server:
    """
    A running logio server.

    @ivar publishPort: The TCP port publishers connect to.
    @ivar subscribePort: The TCP port HTTP subscribers connect to.
    @ivar output: Everything the server has logged so far.
    """

    def __init__(self, testCase: SynchronousTestCase, *options: str) -> None:
        args = list(options)
        if "--publish" not in args:
            args += ["--publish", "tcp:0:interface=127.0.0.1"]
        if "--subscribe" not in args:
            args += ["--subscribe", "tcp:0:interface=127.0.0.1"]
        self.process = subprocess.Popen(
            [twistd(), "-n", "--pidfile=", "logio", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment(),
        )
        testCase.addCleanup(self.stop)
        self.output = b""
        self._lock = threading.Lock()
        assert self.process.stdout is not None
        threading.Thread(target=self._drain, args=(self.process.stdout,), daemon=True).start()
        started = waitFor(
            lambda: self.process.poll() is not None or self._listening(),
            what="logio to start",
        )
        if not isinstance(started, dict):
            self.stop()
            raise AssertionError(f"logio did not start: {self.log()}")
        self.addresses = started

    def _listening(self) -> dict[str, list[str]] | None:
        """
        The addresses the server logged, once it logged both kinds.
        """
        addresses: dict[str, list[str]] = {"publishers": [], "subscribers": []}
        for match in _LISTENING.finditer(self.log().encode()):
            addresses[match.group(1).decode()].append(match.group(3).decode())
        return addresses if all(addresses.values()) else None

    def _drain(self, stdout: IO[bytes]) -> None:
        for line in iter(stdout.readline, b""):
            with self._lock:
                self.output += line

    def log(self) -> str:
        with self._lock:
            return self.output.decode("utf-8", "replace")

    def waitForLog(self, text: str, count: int = 1) -> None:
        """
        Wait until the server has logged C{text} at least C{count} times.
        """
        waitFor(lambda: self.log().count(text) >= count, what=f"{text!r} x{count} in the log")

    def subscribed(self, count: int) -> None:
        """
        Wait until the server has logged C{count} subscriptions in all.
        """
        self.waitForLog(" subscribed to ", count)

    @property
    def publishPort(self) -> int:
        return int(self.addresses["publishers"][0].rsplit(":", 1)[1])

    @property
    def subscribePort(self) -> int:
        return int(self.addresses["subscribers"][0].rsplit(":", 1)[1])

    def stop(self) -> int:
        """
        SIGTERM the server and wait for it; returns its exit status.
        """
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def publish(self, data: bytes) -> socket.socket:
        """
        Connect a publisher, send C{data}, and return the open socket.
        """
        sock = socket.create_connection(("127.0.0.1", self.publishPort), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(data)
        return sock

    def subscribe(
        self, query: str = "", method: str = "GET", headers: Sequence[str] = ()
    ) -> Stream:
        return Stream(
            "127.0.0.1",
            self.subscribePort,
            "/?" + query if query else "/",
            method,
            headers=headers,
        )


class Stream:
    """
    A blocking HTTP/1.1 client for one subscription: reads the status and
    headers at once, then decodes the chunked body as it arrives.
    """

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        method: str = "GET",
        context: ssl.SSLContext | None = None,
        headers: Sequence[str] = (),
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname=host)
        head = "".join(f"{header}\r\n" for header in (f"Host: {host}", *headers))
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode())
        self._raw = b""
        while b"\r\n\r\n" not in self._raw:
            self._recv()
        head, self._raw = self._raw.split(b"\r\n\r\n", 1)
        statusLine, *headerLines = head.decode("latin-1").split("\r\n")
        self.status = int(statusLine.split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in headerLines)}
        self.chunked = self.headers.get("transfer-encoding") == "chunked"
        self.body = b""
        self.ended = False

    def _recv(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("connection closed")
        self._raw += data

    def _decode(self) -> None:
        if not self.chunked:
            self.body += self._raw
            self._raw = b""
            return
        while not self.ended:
            size, sep, rest = self._raw.partition(b"\r\n")
            if not sep:
                return
            length = int(size, 16)
            if len(rest) < length + 2:
                return
            if length == 0:
                self.ended = True
            self.body += rest[:length]
            self._raw = rest[length + 2 :]

    def readUntil(self, done: Callable[[bytes], bool], timeout: float = TIMEOUT) -> bytes:
        """
        Read until C{done(body)} is true; return the body so far.
        """
        self.sock.settimeout(timeout)
        self._decode()
        while not done(self.body):
            self._recv()
            self._decode()
        return self.body

    def lines(self, count: int, timeout: float = TIMEOUT) -> list[bytes]:
        """
        Read until at least C{count} complete lines arrived; return them all.
        """
        body = self.readUntil(lambda b: b.count(b"\n") >= count, timeout)
        return body.split(b"\n")[: body.count(b"\n")]

    def readToEnd(self, timeout: float = TIMEOUT) -> bytes:
        """
        Read until the response ends (final chunk) or the server closes.
        """
        try:
            return self.readUntil(lambda b: self.ended, timeout)
        except EOFError:
            return self.body

    def close(self) -> None:
        self.sock.close()
