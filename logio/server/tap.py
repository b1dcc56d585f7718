"""
C{twistd logio}: command-line options and the service tree.
"""

from __future__ import annotations

import ipaddress
import os
import resource
import signal
from typing import Any, Callable, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

import logio
from logio.auth import Tokens, TokensError
from logio.broker import Broker
from logio.ingest.sniff import PublisherFactory, PublishersService
from logio.ingest.syslog import SyslogDatagramProtocol
from logio.net import describeAddress
from logio.refusals import Refusals
from logio.web.gate import Gate
from logio.web.site import RootResource, SubscribeResource, SubscriberSite

DEFAULT_PUBLISH = "tcp:7701"
DEFAULT_SUBSCRIBE = "tcp:7702"


def _atLeast(minimum: int, doc: str) -> Callable[[str], int]:
    """
    An option type: a whole number of at least C{minimum}.
    """

    def coerce(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise ValueError(f"{value} is less than {minimum}")
        return number

    coerce.coerceDoc = doc  # type: ignore[attr-defined]
    return coerce


_positive = _atLeast(1, "Must be a positive integer.")
_count = _atLeast(0, "Must be a whole number (0 turns it off).")


class Options(usage.Options):
    """
    Options for C{twistd logio}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run a logio server: publishers send log lines over TCP (seed JSON or "
        "plain text lines), subscribers stream the lines matching their "
        "regular expressions over HTTP: "
        "curl -N 'http://localhost:7702/?app=myapp&proc=web|worker'. "
        "ENDPOINT is any Twisted server endpoint string, e.g. "
        "tcp:7701:interface=127.0.0.1, unix:/run/logio.sock, "
        "ssl:7443:privateKey=key.pem:certKey=cert.pem. "
        "Without --auth, anyone who can reach a port publishes as any app "
        "and reads every app: see the README's security section."
    )
    optParameters = [
        [
            "max-line",
            None,
            65536,
            "Longest text line (bytes) or seed JSON record (characters); longer ones are cut and marked.",
            _positive,
        ],
        [
            "max-publishers",
            None,
            10000,
            "Publisher connections at once; more get an error line and are closed.",
            _positive,
        ],
        [
            "topic-timeout",
            None,
            10,
            "Seconds a publisher has to send its topic before it gets an error line and is closed.",
            _positive,
        ],
        [
            "buffer",
            None,
            10000,
            "Lines queued per slow subscriber before the oldest are dropped.",
            _positive,
        ],
        [
            "buffer-bytes",
            None,
            4 * 1024 * 1024,
            "Bytes held per slow subscriber (its queue and socket buffer) before the oldest lines are dropped.",
            _positive,
        ],
        [
            "max-subscribers",
            None,
            20000,
            "Subscribers at once; more get HTTP 503.",
            _positive,
        ],
        [
            "max-log-filters",
            None,
            100,
            "Distinct log= patterns across all subscribers; a new one beyond gets HTTP 503.",
            _positive,
        ],
        [
            "max-queued-bytes",
            None,
            256 * 1024 * 1024,
            "Bytes held for all subscribers together (queues, and stalled ones' sockets); past it the biggest queues drop their oldest lines, then the stalled subscribers holding the most are disconnected.",
            _positive,
        ],
        [
            "history",
            None,
            10000,
            "Records kept in memory for replay (?tail=N, SSE resume); the oldest go first.",
            _count,
        ],
        [
            "history-bytes",
            None,
            16 * 1024 * 1024,
            "Bytes kept in memory for replay: the input records came in, plus 64 per record.",
            _positive,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["publish"] = []
        self["subscribe"] = []
        self["server-name"] = []
        self["syslog-udp"] = []
        self["auth"] = None

    def opt_auth(self, path: str) -> None:
        """
        Let in only the publishers and subscribers with a token of FILE:
        lines of TOKEN pub|sub|both APP_REGEX (reloaded on SIGHUP).
        """
        self["auth"] = path

    def opt_syslog_udp(self, address: str) -> None:
        """
        Also take syslog messages over UDP on PORT or HOST:PORT (repeatable;
        off by default).
        """
        host, _, port = address.rpartition(":")
        if not (port.isdigit() and 0 <= int(port) <= 65535):
            raise usage.UsageError(f"--syslog-udp takes PORT or HOST:PORT, not {address!r}")
        self["syslog-udp"].append((host.strip("[]"), int(port)))

    def opt_server_name(self, name: str) -> None:
        """
        Without --auth, answer HTTP requests for the host NAME too, besides
        IP addresses and localhost (repeatable).
        """
        self["server-name"].append(name)

    def opt_publish(self, description: str) -> None:
        """
        Listen for publishers on ENDPOINT (repeatable; default tcp:7701).
        """
        self["publish"].append(description)

    def opt_subscribe(self, description: str) -> None:
        """
        Listen for HTTP subscribers on ENDPOINT (repeatable; default tcp:7702).
        """
        self["subscribe"].append(description)

    def postOptions(self) -> None:
        if not self["publish"]:
            self["publish"] = [DEFAULT_PUBLISH]
        if not self["subscribe"]:
            self["subscribe"] = [DEFAULT_SUBSCRIBE]


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

    @ivar role: What listens here: C{publishers} or C{subscribers}.
    @ivar description: The endpoint string.
    @ivar guarded: Whether the server has C{--auth}.
    """

    log = Logger()

    def __init__(
        self,
        role: str,
        description: str,
        factory: IProtocolFactory,
        reactor: Any,
        guarded: bool = False,
    ) -> None:
        try:
            endpoint = serverFromString(reactor, withBacklog(description))
        except Exception as e:
            # A string Twisted cannot parse (ValueError), a missing key or
            # certificate file (OSError), a bad one (OpenSSL's errors)...
            raise StartupError(f"logio: bad endpoint {description!r} for {role}: {e}") from None
        super().__init__(endpoint, factory)
        self.role = role
        self.description = description
        self.guarded = guarded
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
        _logListening(self.log, self.role, port.getHost(), self.guarded, may)
        return port

    def _failedLater(self, reason: Failure) -> None:
        if reason.check(CancelledError):
            return
        # Not "message": legacy log observers own that key.
        self.log.critical("{error}", error=self._cannotListen(reason))
        self._reactor.stop()


def _logListening(log: Logger, role: str, address: object, guarded: bool, may: str) -> None:
    """
    Log where C{role} is listening; without C{--auth}, warn when anyone
    beyond this machine can reach it, and what they can do there.
    """
    log.info("Listening for {role} on {address}", role=role, address=describeAddress(address))
    if not (guarded or _loopback(address)):
        log.warn(
            "{address} is reachable beyond this machine and the server has no --auth: "
            "anyone who reaches it can {may}. See the README's security section.",
            address=describeAddress(address),
            may=may,
        )


def _loopback(address: object) -> bool:
    """
    Whether only this machine can reach a listening address: a loopback
    IP, or not an IP at all (a UNIX socket, guarded by its file's mode).
    """
    host = getattr(address, "host", None)
    if host is None:
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


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
        self, host: str, port: int, protocol: SyslogDatagramProtocol, reactor: Any, guarded: bool
    ) -> None:
        self.host = host
        self.port = port
        self.protocol = protocol
        self._reactor = reactor
        self._guarded = guarded
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
            "publish as any app",
        )

    def stopService(self) -> Any:
        super().stopService()
        if self._listening is not None:
            listening, self._listening = self._listening, None
            return listening.stopListening()
        return None


_log = Logger()


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


def makeService(options: Options, reactor: Optional[Any] = None) -> MultiService:
    """
    Build the service tree: the broker, then one listening service per
    publisher and subscriber endpoint.
    """
    if reactor is None:
        from twisted.internet import reactor as installed

        reactor = installed
    raiseFileLimit()
    _log.info(
        "logio {version} from {path}",
        version=logio.version(),
        path=os.path.dirname(os.path.abspath(logio.__file__)),
    )
    top = MultiService()
    tokens = None
    if options["auth"] is not None:
        try:
            tokens = Tokens(options["auth"])
        except TokensError as e:
            raise StartupError(f"logio: --auth: {e}") from None
        AuthService(tokens, reactor).setServiceParent(top)
        _log.info(
            "Letting in only the {count} tokens of {path}", count=len(tokens), path=tokens.path
        )
    broker = Broker(
        options["history"], options["history-bytes"], int(reactor.seconds() * 1000), reactor
    )
    broker.setServiceParent(top)
    # One log of refusals for both ports, so each cause is rate-limited once.
    refusals = Refusals(broker.stats, reactor)
    publishers = PublisherFactory(
        broker,
        reactor,
        options["max-line"],
        options["max-publishers"],
        options["topic-timeout"],
        refusals,
        tokens,
    )
    # Stopped before the broker (a MultiService stops its children in
    # reverse order), so publishers stop being read before subscribers drain.
    PublishersService(publishers).setServiceParent(top)
    for host, port in options["syslog-udp"]:
        SyslogUDPService(
            host,
            port,
            SyslogDatagramProtocol(broker, reactor, options["max-line"], refusals, tokens),
            reactor,
            tokens is not None,
        ).setServiceParent(top)
    for description in options["publish"]:
        ListeningService(
            "publishers", description, publishers, reactor, tokens is not None
        ).setServiceParent(top)
    subscribe = SubscribeResource(
        broker,
        reactor,
        broker.start,
        options["buffer"],
        options["buffer-bytes"],
        maxSubscribers=options["max-subscribers"],
        maxLogFilters=options["max-log-filters"],
        maxQueuedBytes=options["max-queued-bytes"],
        refusals=refusals,
        tokens=tokens,
    )
    gate = Gate(refusals, tokens, options["server-name"])
    site = SubscriberSite(RootResource(broker, subscribe, gate), reactor=reactor)
    for description in options["subscribe"]:
        ListeningService(
            "subscribers", description, site, reactor, tokens is not None
        ).setServiceParent(top)
    return top
