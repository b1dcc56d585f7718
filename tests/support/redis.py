"""
A real C{redis-server} for the end-to-end tests: on a free port, with no
persistence, optionally with a password or TLS only, stopped at the end of
the test and restartable on the same port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.ports import freePort
from tests.support.processes import terminate
from tests.support.tls import certificates
from tests.support.waiting import waitFor

#: Ports a test never takes: Redis's own and logio's.
RESERVED_PORTS = {6379, 7701, 7702}


def redisServer() -> str:
    """
    The path of C{redis-server}; skip the test if it is not installed,
    unless C{CI} is set: then fail.
    """
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI"):
            raise AssertionError("redis-server is not installed")
        raise SkipTest("redis-server is not installed")
    return found


class RedisServer:
    """
    A C{redis-server} subprocess, running once constructed.

    @ivar port: Where it listens on 127.0.0.1 (TLS only, with C{tls}).
    @ivar password: What C{AUTH} takes, or L{None}.
    @ivar certificates: With TLS, the paths of the PEM files by role
        (C{ca}, C{cert}, C{key}); the certificate is for C{localhost} only.
    """

    def __init__(
        self,
        testCase: SynchronousTestCase,
        password: str | None = None,
        tls: bool = False,
        persistent: bool = False,
    ) -> None:
        """
        @param persistent: Whether the server keeps its data across a
            restart (an append-only file written at every command).
        """
        self._executable = redisServer()
        self.port = freePort()
        while self.port in RESERVED_PORTS:
            self.port = freePort()
        self.password = password
        self.persistent = persistent
        self.directory = tempfile.mkdtemp(prefix="logio-redis-")
        testCase.addCleanup(shutil.rmtree, self.directory, ignore_errors=True)
        self.certificates = certificates(self.directory, ["localhost"]) if tls else {}
        self._process: subprocess.Popen[bytes] | None = None
        testCase.addCleanup(self.stop)
        self.start()

    def url(self, db: int = 0, password: str | None = None, host: str | None = None) -> str:
        """
        A URL for this server with database C{db}, C{password} or the
        server's own, and C{host} or the one its certificate names
        (C{127.0.0.1} without TLS).
        """
        password = self.password if password is None else password
        credentials = f":{password}@" if password else ""
        scheme = "rediss" if self.certificates else "redis"
        host = host or ("localhost" if self.certificates else "127.0.0.1")
        return f"{scheme}://{credentials}{host}:{self.port}/{db}"

    def start(self) -> None:
        """
        Start the server and wait until it answers C{PING}.
        """
        arguments = [
            self._executable,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "always",
            "--dir",
            self.directory,
            "--logfile",
            os.path.join(self.directory, "redis.log"),
        ]
        if self.certificates:
            arguments += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                self.certificates["cert"],
                "--tls-key-file",
                self.certificates["key"],
                "--tls-ca-cert-file",
                self.certificates["ca"],
                "--tls-auth-clients",
                "no",
            ]
        else:
            arguments += ["--port", str(self.port)]
        if self.password is not None:
            arguments += ["--requirepass", self.password]
        self._process = subprocess.Popen(
            arguments, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        waitFor(self._answers, what=f"redis-server to answer PING on port {self.port}")

    def stop(self) -> None:
        """
        Stop the server (by its pid) unless it is stopped, and wait for it.
        """
        if self._process is not None:
            # A paused server takes SIGTERM only once it goes on.
            self.resume()
            terminate(self._process)
            self._process = None

    def pause(self) -> None:
        """
        Stop the server's process (C{SIGSTOP}): it keeps its connections
        and answers nothing until L{resume}.
        """
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """
        Let a paused server go on (C{SIGCONT}).
        """
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """
        Stop the server and start it again on the same port: empty, unless
        it is persistent.
        """
        self.stop()
        self.start()

    def log(self) -> str:
        """
        What the server logged.
        """
        try:
            with open(os.path.join(self.directory, "redis.log")) as log:
                return log.read()
        except FileNotFoundError:
            return ""

    def _answers(self) -> bool:
        """
        Whether the server answers C{PING}; fail if it has exited.
        """
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"redis-server exited:\n{self.log()}")
        commands = [b"PING\r\n"]
        if self.password is not None:
            commands.insert(0, b"AUTH %s\r\n" % self.password.encode())
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as plain:
                connection: socket.socket = plain
                if self.certificates:
                    context = ssl.create_default_context(cafile=self.certificates["ca"])
                    connection = context.wrap_socket(plain, server_hostname="localhost")
                connection.sendall(b"".join(commands))
                received = b""
                while received.count(b"\r\n") < len(commands):
                    data = connection.recv(4096)
                    if not data:
                        return False
                    received += data
                return received.endswith(b"+PONG\r\n")
        except OSError:
            return False
