"""
A real C{twistd -n logio} in a subprocess on free ports, running this
checkout's code; a small blocking HTTP client that reads a chunked
subscription stream; and single requests to the subscriber port.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from typing import IO, Callable, Sequence

from twisted.trial.unittest import SynchronousTestCase

from tests.support.http import decodeChunks
from tests.support.metrics import SampleKey, parseMetrics
from tests.support.processes import environment, terminate
from tests.support.waiting import TIMEOUT, waitFor

_LISTENING = re.compile(rb"Listening for (publishers|subscribers) on (\S+) (\S+)")


def twistd() -> str:
    """
    The installed C{twistd} next to this Python, else the one on C{PATH}.
    """
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    return beside if os.path.exists(beside) else (shutil.which("twistd") or "twistd")


def logioArguments(*options: str) -> list[str]:
    """
    The arguments of C{twistd} that run C{logio} in the foreground with
    C{options}, on any free port of 127.0.0.1 for publishers and for
    subscribers unless C{options} say where.
    """
    args = list(options)
    if "--publish" not in args:
        args += ["--publish", "tcp:0:interface=127.0.0.1"]
    if "--subscribe" not in args:
        args += ["--subscribe", "tcp:0:interface=127.0.0.1"]
    return ["-n", "--pidfile=", "logio", *args]


def listening(log: str) -> dict[str, list[str]] | None:
    """
    The addresses a logio server's C{log} says it listens on, by kind
    (C{publishers}, C{subscribers}), once it has named both kinds.
    """
    addresses: dict[str, list[str]] = {"publishers": [], "subscribers": []}
    for match in _LISTENING.finditer(log.encode()):
        addresses[match.group(1).decode()].append(match.group(3).decode())
    return addresses if all(addresses.values()) else None


def portOf(address: str) -> int:
    """
    The port of an address as logio logs it (C{host:port}).
    """
    return int(address.rsplit(":", 1)[1])


class Server:
    """
    A running logio server.

    @ivar publishPort: The TCP port publishers connect to.
    @ivar subscribePort: The TCP port HTTP subscribers connect to.
    @ivar output: Everything the server has logged so far.
    """

    def __init__(
        self,
        testCase: SynchronousTestCase,
        *options: str,
        preexec: Callable[[], None] | None = None,
        twistdOptions: Sequence[str] = (),
    ) -> None:
        """
        Start C{twistd -n logio} with C{options}, on free ports.

        @param preexec: Called in the child before it runs twistd (to set
            a resource limit, say).
        @param twistdOptions: Options of twistd itself (C{--reactor=poll}).
        """
        arguments = logioArguments(*options)
        command = arguments.index("logio")
        arguments[command:command] = twistdOptions
        self.process = subprocess.Popen(
            [twistd(), *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment(),
            preexec_fn=preexec,
        )
        testCase.addCleanup(self.stop)
        self.output = bytearray()
        self._lock = threading.Lock()
        assert self.process.stdout is not None
        self._drainer = threading.Thread(
            target=self._drain, args=(self.process.stdout,), daemon=True
        )
        self._drainer.start()
        # Started once it has named every address it was given: one line
        # each, logged as each listener opens.
        expected = {
            "publishers": arguments.count("--publish"),
            "subscribers": arguments.count("--subscribe"),
        }

        def ready() -> dict[str, list[str]] | bool | None:
            if self.process.poll() is not None:
                return True
            found = listening(self.log())
            if found and all(len(found[kind]) >= count for kind, count in expected.items()):
                return found
            return None

        started = waitFor(ready, what="logio to start")
        if not isinstance(started, dict):
            self.stop()
            raise AssertionError(f"logio did not start: {self.log()}")
        self.addresses = started

    def _drain(self, stdout: IO[bytes]) -> None:
        for line in iter(stdout.readline, b""):
            with self._lock:
                self.output.extend(line)

    def log(self) -> str:
        """
        Everything the server has logged so far, decoded.
        """
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
        """
        The port of the first address the server listens on for publishers.
        """
        return portOf(self.addresses["publishers"][0])

    @property
    def subscribePort(self) -> int:
        """
        The port of the first address the server listens on for subscribers.
        """
        return portOf(self.addresses["subscribers"][0])

    def samePorts(self) -> tuple[str, ...]:
        """
        The options that make another server listen on this one's ports
        (on 127.0.0.1, as L{logioArguments} does by default): to start its
        successor once it has stopped.
        """
        return (
            "--publish",
            f"tcp:{self.publishPort}:interface=127.0.0.1",
            "--subscribe",
            f"tcp:{self.subscribePort}:interface=127.0.0.1",
        )

    def stop(self) -> int:
        """
        SIGTERM the server and wait for it, and for the rest of its log;
        returns its exit status.
        """
        status = terminate(self.process)
        self._drainer.join(TIMEOUT)
        return status

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
        """
        Start a subscription: C{method} C{/?query} on the subscriber port.
        """
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
        if not self.ended:
            data, self.ended, self._raw = decodeChunks(self._raw)
            self.body += data

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
        """
        Close the connection.
        """
        self.sock.close()


def get(
    server: Server, path: str, headers: dict[str, str] | None = None, port: int | None = None
) -> http.client.HTTPResponse:
    """
    Send one request to the subscriber port, or to C{port} (another of the
    server's subscriber ports); return the response, its body unread.
    """
    port = server.subscribePort if port is None else port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    connection.request("GET", path, headers=headers or {})
    return connection.getresponse()


def metrics(server: Server, port: int | None = None) -> dict[SampleKey, float]:
    """
    The server's C{/metrics} (from its subscriber port, or C{port}), parsed
    by Prometheus's own parser.
    """
    return parseMetrics(get(server, "/metrics", port=port).read().decode())
