# -*- test-case-name: tests.test_tap -*-
"""
The services of C{twistd logio} besides the broker: the listeners of both
ports and of syslog over UDP, the reload of tokens on SIGHUP, the stop of
publishers at shutdown; and what a server does to its process at start-up.
"""

from __future__ import annotations

import ctypes
import resource
import signal
from typing import Any, Optional, cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure

from logio.auth import Tokens
from logio.ingest.sniff import PublisherFactory
from logio.ingest.syslognet import SyslogDatagramProtocol
from logio.net import describeAddress, isLocal
from logio.server.shared import SHAREABLE, SharedPorts


class StartupError(SystemExit, Exception):
    """
    The server cannot start; the message says why, in one line.

    A L{SystemExit}, so C{twistd -n} prints just the message and exits 1;
    also an L{Exception}, so a daemonizing C{twistd} reports it to the
    terminal and removes its pid file instead of hanging.
    """


#: How many connections the kernel may hold for us before we accept them
#: (Twisted's default is 50).
BACKLOG = 511


def withBacklog(description: str) -> str:
    """
    C{description} with a listen backlog of L{BACKLOG}, unless it names one
    or is not an endpoint kind that takes one.
    """
    kind = description.partition(":")[0]
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return f"{description}:backlog={BACKLOG}"
    return description


class ListeningService(StreamServerEndpointService):
    """
    Listen on one endpoint (in C{privilegedStartService}, so C{twistd
    --uid} can bind a privileged port) and log the real address; an
    endpoint that cannot be built or listened on stops the server with one
    clear line.

    Without C{--auth}, a listener anyone beyond this machine may reach is
    logged as a warning.

    With C{reusePort}, other server processes of this machine may listen on
    the same address too (C{SO_REUSEPORT}), and the kernel spreads new
    connections among them; a listener without it on that address still
    fails to listen, with the same clear line.  Only C{tcp:}, C{tcp6:} and
    C{ssl:} endpoints can be shared.

    @ivar role: What listens here: C{publishers} or C{subscribers}.
    @ivar description: The endpoint string.
    @ivar guarded: Whether the server has C{--auth}.
    @ivar protected: Whether, without C{--auth}, it answers this machine's
        peers only (without C{--public}).
    @ivar reusePort: Whether other processes may listen on the same address.
    """

    log = Logger()

    def __init__(
        self,
        role: str,
        description: str,
        factory: IProtocolFactory,
        reactor: Any,
        guarded: bool = False,
        protected: bool = False,
        *,
        reusePort: bool = False,
    ) -> None:
        listener = reactor
        if reusePort:
            if description.partition(":")[0] not in SHAREABLE:
                raise StartupError(
                    f"logio: cannot share {description!r} for {role} with other server "
                    f"processes: the cluster needs tcp, tcp6 or ssl listeners"
                )
            listener = SharedPorts(reactor)
        try:
            endpoint = serverFromString(listener, withBacklog(description))
        except Exception as e:
            # A string Twisted cannot parse (ValueError), a missing key or
            # certificate file (OSError), a bad one (OpenSSL's errors)...
            raise StartupError(f"logio: bad endpoint {description!r} for {role}: {e}") from None
        super().__init__(endpoint, factory)
        self.role = role
        self.description = description
        self.guarded = guarded
        self.protected = protected
        self.reusePort = reusePort
        self._reactor = reactor

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        starting = True
        early: list[Failure] = []

        def failed(reason: Failure) -> None:
            if starting:
                early.append(reason)
            else:
                self._failedLater(reason)

        self._waitingForPort = self.endpoint.listen(self.factory)
        self._waitingForPort.addCallbacks(self._listening, failed)
        starting = False
        if early:
            raise StartupError(self._cannotListen(early[0]))

    def _cannotListen(self, reason: Failure) -> str:
        return f"logio: cannot listen for {self.role} on {self.description}: {reason.getErrorMessage()}"

    def _listening(self, port: IListeningPort) -> IListeningPort:
        may = "publish as any app" if self.role == "publishers" else "read every app"
        tls = self.description.partition(":")[0] == "ssl"
        _logListening(self.log, self.role, port.getHost(), self.guarded, self.protected, may, tls)
        return port

    def _failedLater(self, reason: Failure) -> None:
        if reason.check(CancelledError):
            return
        # Not "message": legacy log observers own that key.
        self.log.critical("{error}", error=self._cannotListen(reason))
        self._reactor.stop()


def _logListening(
    log: Logger,
    role: str,
    address: object,
    guarded: bool,
    protected: bool,
    may: str,
    tls: bool = False,
) -> None:
    """
    Log where C{role} is listening, and whether with TLS; without
    C{--auth}, warn when anyone beyond this machine can reach it, and what
    they can do there.
    """
    where = describeAddress(address) + (" with TLS" if tls else "")
    log.info("Listening for {role} on {address}", role=role, address=where)
    if guarded or isLocal(address):
        return
    if protected:
        log.info(
            "{address} is reachable beyond this machine, but the server has no --auth: "
            "it answers this machine's peers only (--public answers all)",
            address=describeAddress(address),
        )
        return
    log.warn(
        "{address} is reachable beyond this machine and the server has no --auth but "
        "--public: anyone who reaches it can {may}. See the README's security section.",
        address=describeAddress(address),
        may=may,
    )


class AuthService(Service):
    """
    Reload the tokens of C{--auth} on SIGHUP, in the reactor's thread.
    """

    def __init__(self, tokens: Tokens, reactor: Any) -> None:
        self.tokens = tokens
        self._reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._hangUp)

    def _hangUp(self, number: int, frame: object) -> None:
        self._reactor.callFromThread(self.tokens.reload)

    def stopService(self) -> Any:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        return None


class SyslogUDPService(Service):
    """
    Take syslog messages over UDP on one address; listen in
    C{privilegedStartService}, so C{twistd --uid} can bind port 514.
    """

    log = Logger()

    def __init__(
        self,
        host: str,
        port: int,
        protocol: SyslogDatagramProtocol,
        reactor: Any,
        guarded: bool,
        protected: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.protocol = protocol
        self._reactor = reactor
        self._guarded = guarded
        self._protected = protected
        self._listening: Optional[IListeningPort] = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        try:
            self._listening = self._reactor.listenUDP(self.port, self.protocol, interface=self.host)
        except CannotListenError as e:
            raise StartupError(
                f"logio: cannot listen for syslog over UDP on {self.host}:{self.port}: {e.socketError}"
            ) from None
        _logListening(
            self.log,
            "syslog over UDP",
            self._listening.getHost(),
            self._guarded,
            self._protected,
            "publish as any app",
        )

    def stopService(self) -> Any:
        super().stopService()
        if self._listening is not None:
            listening, self._listening = self._listening, None
            return listening.stopListening()
        return None


class PublishersService(Service):
    """
    Stop reading publishers at shutdown, before the broker drains what they
    sent to the subscribers: pause every connection, publish what each has
    already read (a last line without its newline), close them, and log how
    many records were read since start-up.
    """

    log = Logger()

    def __init__(self, factory: PublisherFactory) -> None:
        self.factory = factory

    def stopService(self) -> Any:
        super().stopService()
        connections = list(self.factory.connections)
        for connection in connections:
            assert connection.transport is not None
            cast(IPushProducer, connection.transport).pauseProducing()
        for connection in connections:
            connection.stopReading()
        self.log.info(
            "Stopped reading {count} publishers; {records} records read since start-up",
            count=len(connections),
            records=sum(self.factory.broker.stats.recordsIn.values()),
        )
        return None


_log = Logger()


#: glibc's C{M_MMAP_THRESHOLD} option of C{mallopt}, and the threshold set.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1024 * 1024


def returnLargeBuffers() -> None:
    """
    Make buffers of L{MMAP_THRESHOLD} bytes and more (request bodies read
    whole, the output of large batches) go back to the system when freed.
    glibc maps such buffers of their own, but after freeing one it raises
    its threshold to that size, and later ones of up to 32 MiB come from the
    heap, whose freed memory the process keeps.  Where the C library is
    not glibc this does nothing.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def raiseFileLimit() -> None:
    """
    Raise the open-files soft limit to the hard limit: every subscriber and
    publisher is a file descriptor.  Where that is refused (macOS refuses an
    unlimited hard limit), say so and go on with the soft limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            _log.warn(
                "Could not raise the open-files limit from {soft} to {hard} ({error}); "
                "at most {soft} publishers and subscribers together",
                soft=soft,
                hard=hard,
                error=e,
            )
