"""
C{twistd logio}: command-line options and the service tree.
"""

from __future__ import annotations

import resource
from typing import Any, Callable, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from logio.broker import Broker
from logio.net import describeAddress
from logio.publish import PublisherFactory, PublishersService
from logio.refusals import Refusals
from logio.web import RootResource, SubscribeResource, SubscriberSite

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
        "ssl:7443:privateKey=key.pem:certKey=cert.pem."
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

    @ivar role: What listens here: C{publishers} or C{subscribers}.
    @ivar description: The endpoint string.
    """

    log = Logger()

    def __init__(
        self, role: str, description: str, factory: IProtocolFactory, reactor: Any
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
        self.log.info(
            "Listening for {role} on {address}",
            role=self.role,
            address=describeAddress(port.getHost()),
        )
        return port

    def _failedLater(self, reason: Failure) -> None:
        if reason.check(CancelledError):
            return
        # Not "message": legacy log observers own that key.
        self.log.critical("{error}", error=self._cannotListen(reason))
        self._reactor.stop()


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
    top = MultiService()
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
    )
    # Stopped before the broker (a MultiService stops its children in
    # reverse order), so publishers stop being read before subscribers drain.
    PublishersService(publishers).setServiceParent(top)
    for description in options["publish"]:
        ListeningService("publishers", description, publishers, reactor).setServiceParent(top)
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
    )
    site = SubscriberSite(RootResource(broker, subscribe), reactor=reactor)
    for description in options["subscribe"]:
        ListeningService("subscribers", description, site, reactor).setServiceParent(top)
    return top
