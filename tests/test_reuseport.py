"""
Tests for listeners that several server processes share
(L{logio.server.shared}, and L{ListeningService} with C{reusePort}).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import subprocess
import sys
from typing import Any, Awaitable, Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from logio.server.services import ListeningService, StartupError
from tests.support.ports import freePort, socketPath
from tests.support.processes import Running
from tests.support.tls import certificates
from tests.support.waiting import TIMEOUT, waitFor

#: How many connections to make at most before both listeners of a port
#: must have had one: the kernel picks a listener by a hash of each
#: connection's addresses, so each goes to either one about half the time.
ATTEMPTS = 200


class Named(Protocol):
    """
    Answer with the name of the factory, then close.
    """

    factory: Naming

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.factory.name + b"\n")
        self.transport.loseConnection()


class Naming(ServerFactory):
    """
    Make L{Named} protocols that answer with C{name}.
    """

    protocol = Named

    def __init__(self, name: bytes) -> None:
        self.name = name


class Answer(Protocol):
    """
    Collect what the server says until it closes.
    """

    def __init__(self) -> None:
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(self.received.strip())


async def answer(host: str, port: int) -> bytes:
    """
    Connect to C{host}:C{port} and return what the server answered.
    """
    kind = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
    protocol = Answer()
    await connectProtocol(kind(reactor, host, port, timeout=int(TIMEOUT)), protocol)
    return await protocol.done.addTimeout(TIMEOUT, reactor)


async def untilBothAnswer(ask: Callable[[], Awaitable[bytes]]) -> set[bytes]:
    """
    Ask until two different names answered, at most L{ATTEMPTS} times;
    return the names that answered.
    """
    answered: set[bytes] = set()
    for _ in range(ATTEMPTS):
        answered.add(await ask())
        if len(answered) >= 2:
            break
    return answered


def listening(events: list[dict[str, Any]]) -> list[str]:
    """
    The lines logged by logio among C{events}.
    """
    return [formatEvent(e) for e in events if e.get("log_namespace", "").startswith("logio.")]


def cannotListen(role: str, description: str, address: str) -> str:
    """
    The line of a server that cannot listen on a port in use.
    """
    return (
        f"logio: cannot listen for {role} on {description}: "
        f"Couldn't listen on {address}: "
        f"[Errno {errno.EADDRINUSE}] {os.strerror(errno.EADDRINUSE)}."
    )


class SharedListenerTests(TestCase):
    """
    Listeners with C{reusePort} on one address, in this process.
    """

    def listen(
        self, description: str, name: bytes = b"", reusePort: bool = True
    ) -> ListeningService:
        """
        Start a L{ListeningService} for publishers on C{description} whose
        connections answer C{name}; stop it when the test ends.
        """
        service = ListeningService(
            "publishers", description, Naming(name), reactor, reusePort=reusePort
        )
        service.startService()
        self.addCleanup(service.stopService)
        return service

    async def test_sharedPort(self) -> None:
        """
        Two listeners with C{reusePort} start on one port, each logs the
        address, and connections reach both.
        """
        port = freePort()
        description = f"tcp:{port}:interface=127.0.0.1"
        with capturedLogs() as events:
            first = self.listen(description, b"first")
            second = self.listen(description, b"second")
        self.assertTrue(first.reusePort and second.reusePort)
        self.assertEqual(
            listening(events),
            [f"Listening for publishers on tcp 127.0.0.1:{port}"] * 2,
        )
        answered = await untilBothAnswer(lambda: answer("127.0.0.1", port))
        self.assertEqual(answered, {b"first", b"second"})

    async def test_sharedPortIPv6(self) -> None:
        """
        C{tcp6:} listeners share a port too, on an IPv6 socket.
        """
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            raise SkipTest("no IPv6 loopback") from None
        port = freePort()
        description = f"tcp6:{port}:interface=\\:\\:1"
        with capturedLogs() as events:
            self.listen(description, b"first")
            self.listen(description, b"second")
        self.assertEqual(listening(events), [f"Listening for publishers on tcp ::1:{port}"] * 2)
        answered = await untilBothAnswer(lambda: answer("::1", port))
        self.assertEqual(answered, {b"first", b"second"})

    def test_portInUse(self) -> None:
        """
        Without C{reusePort}, a listener on a port in use stops the server
        with the clear line it always had.
        """
        port = freePort()
        description = f"tcp:{port}:interface=127.0.0.1"
        self.listen(description, reusePort=False)
        with self.assertRaises(StartupError) as raised:
            self.listen(description, reusePort=False)
        self.assertEqual(
            str(raised.exception),
            cannotListen("publishers", description, f"127.0.0.1:{port}"),
        )

    def test_anyPortNotShared(self) -> None:
        """
        A listener with C{reusePort} on port 0 (any free port) does not
        share the port it gets: another node's listener on it is refused,
        so two nodes asking for any port never share one by chance.
        """
        with capturedLogs() as events:
            self.listen("tcp:0:interface=127.0.0.1")
        [line] = listening(events)
        port = int(line.rsplit(":", 1)[1])
        description = f"tcp:{port}:interface=127.0.0.1"
        with self.assertRaises(StartupError) as raised:
            self.listen(description)
        self.assertEqual(
            str(raised.exception),
            cannotListen("publishers", description, f"127.0.0.1:{port}"),
        )

    def test_sharedAndNot(self) -> None:
        """
        A listener with C{reusePort} and one without cannot share a port,
        whichever listens first; the second stops the server with the clear
        line.
        """
        for firstShares in (True, False):
            port = freePort()
            description = f"tcp:{port}:interface=127.0.0.1"
            self.listen(description, reusePort=firstShares)
            with self.assertRaises(StartupError) as raised:
                self.listen(description, reusePort=not firstShares)
            self.assertEqual(
                str(raised.exception),
                cannotListen("publishers", description, f"127.0.0.1:{port}"),
            )

    async def test_tls(self) -> None:
        """
        C{ssl:} listeners with C{reusePort} share a port: each does the TLS
        handshake with the endpoint's certificate and answers.
        """
        paths = certificates(os.path.abspath(self.mktemp()), ["127.0.0.1"])
        port = freePort()
        description = (
            f"ssl:{port}:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}"
        )
        with capturedLogs() as events:
            self.listen(description, b"first")
            self.listen(description, b"second")
        self.assertEqual(
            listening(events),
            [f"Listening for publishers on tcp 127.0.0.1:{port} with TLS"] * 2,
        )
        certificatesSeen: list[dict[str, Any]] = []

        def handshake() -> bytes:
            context = ssl.create_default_context(cafile=paths["ca"])
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    certificatesSeen.append(tls.getpeercert())
                    received = b""
                    while chunk := tls.recv(1024):
                        received += chunk
            return received.strip()

        answered = await untilBothAnswer(lambda: deferToThread(handshake))
        self.assertEqual(answered, {b"first", b"second"})
        for seen in certificatesSeen:
            self.assertEqual(seen["subjectAltName"], (("IP Address", "127.0.0.1"),))

    def test_notShareable(self) -> None:
        """
        With C{reusePort}, an endpoint that cannot be shared (a UNIX socket,
        any kind but C{tcp:}, C{tcp6:} and C{ssl:}) stops the server with a
        line saying what the cluster needs; without it, it is accepted.
        """
        path = socketPath(self, "s.sock")
        for description in (f"unix:{path}", "systemd:domain=INET:index=0"):
            with self.assertRaises(StartupError) as raised:
                ListeningService("subscribers", description, Naming(b""), reactor, reusePort=True)
            self.assertEqual(
                str(raised.exception),
                f"logio: cannot share {description!r} for subscribers with other server "
                "processes: the cluster needs tcp, tcp6 or ssl listeners",
            )
        self.assertFalse(
            ListeningService("subscribers", f"unix:{path}", Naming(b""), reactor).reusePort
        )

    def test_badShared(self) -> None:
        """
        With C{reusePort}, an endpoint string Twisted cannot parse is still
        the clear line of a bad endpoint.
        """
        with self.assertRaises(StartupError) as raised:
            ListeningService("publishers", "tcp:nope", Naming(b""), reactor, reusePort=True)
        self.assertIn("logio: bad endpoint 'tcp:nope' for publishers", str(raised.exception))


#: A server process: a L{ListeningService} with C{reusePort} on the
#: endpoint of its first argument, answering its process id.
SERVER = """
import os, sys
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from logio.server.services import ListeningService

class Pid(Protocol):
    def connectionMade(self):
        self.transport.write(b"%d\\n" % os.getpid())
        self.transport.loseConnection()

service = ListeningService(
    "publishers", sys.argv[1], Factory.forProtocol(Pid), reactor, reusePort=True
)
service.startService()
print("listening", os.getpid(), flush=True)
reactor.run()
"""

#: Seconds a new Python may take to import Twisted and listen on a busy
#: machine.
STARTUP = 3 * TIMEOUT


class SharedProcessesTests(TestCase):
    """
    Two server processes share a port.
    """

    def start(self, description: str) -> Running:
        """
        Start a server process listening on C{description}; wait until it
        listens.
        """
        server = Running(self, [sys.executable, "-c", SERVER, description], stdout=subprocess.PIPE)
        waitFor(
            lambda: b"listening" in server.out or server.process.poll() is not None,
            timeout=STARTUP,
            what="a server process to listen",
        )
        self.assertIn(b"listening", server.out, server.err.decode("utf-8", "replace"))
        return server

    async def test_twoProcesses(self) -> None:
        """
        Two processes listening on one port with C{reusePort} both start,
        and connections reach both.
        """
        port = freePort()
        servers = [self.start(f"tcp:{port}:interface=127.0.0.1") for _ in range(2)]
        answered = await untilBothAnswer(lambda: answer("127.0.0.1", port))
        self.assertEqual(answered, {str(server.process.pid).encode() for server in servers})
