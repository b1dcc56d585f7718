"""
C{twistd logio}: command-line options and the service tree.
"""

from __future__ import annotations

import resource
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from logio.broker import Broker
from logio.publish import PublisherFactory
from logio.web import SubscribeResource, SubscriberSite

DEFAULT_PUBLISH = "tcp:7701"
DEFAULT_SUBSCRIBE = "tcp:7702"


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive integer")
    return number


_positive.coerceDoc = "Must be a positive integer."  # type: ignore[attr-defined]


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
            "Longest text line (bytes; longer ones are cut and marked) or seed JSON value (characters; longer ones are refused).",
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


def describeAddress(address: Any) -> str:
    """
    A human-readable listening address: C{tcp 127.0.0.1:7701}, C{unix /path}.
    """
    kind = getattr(address, "type", None)
    if kind is not None:
        return f"{kind.lower()} {address.host}:{address.port}"
    name = getattr(address, "name", address)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return f"unix {name}"


class StartupError(SystemExit, Exception):
    """
    The server cannot start; the message says why, in one line.

    A L{SystemExit}, so C{twistd -n} prints just the message and exits 1;
    also an L{Exception}, so a daemonizing C{twistd} reports it to the
    terminal and removes its pid file instead of hanging.
    """


class ListeningService(Service):
    """
    Listen on one endpoint and log the real address; a port that cannot be
    listened on stops the server with one clear line.
    """

    log = Logger()

    def __init__(self, role: str, description: str, factory: IProtocolFactory) -> None:
        self.role = role
        self.description = description
        self.factory = factory
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        from twisted.internet import reactor

        super().startService()
        try:
            endpoint = serverFromString(reactor, self.description)
        except Exception as e:
            # A string Twisted cannot parse (ValueError), a missing key or
            # certificate file (OSError), a bad one (OpenSSL's errors)...
            raise StartupError(
                f"logio: bad endpoint {self.description!r} for {self.role}: {e}"
            ) from None
        listening = endpoint.listen(self.factory)
        outcome: list[object] = []
        listening.addBoth(outcome.append)
        if outcome and isinstance(outcome[0], Failure):
            raise StartupError(self._cannotListen(outcome[0]))
        if outcome:
            self._listening(outcome[0])  # type: ignore[arg-type]
        else:
            listening.addCallbacks(self._listening, self._failedLater)

    def _cannotListen(self, reason: Failure) -> str:
        return f"logio: cannot listen for {self.role} on {self.description}: {reason.getErrorMessage()}"

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        self.log.info(
            "Listening for {role} on {address}",
            role=self.role,
            address=describeAddress(port.getHost()),
        )

    def _failedLater(self, reason: Failure) -> None:
        from twisted.internet import reactor

        # Not "message": legacy log observers own that key.
        self.log.critical("{error}", error=self._cannotListen(reason))
        reactor.stop()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
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


def makeService(options: Options) -> MultiService:
    """
    Build the service tree: the broker, then one listening service per
    publisher and subscriber endpoint.
    """
    from twisted.internet import reactor as clock

    raiseFileLimit()
    top = MultiService()
    broker = Broker()
    broker.setServiceParent(top)
    publishers = PublisherFactory(broker, clock, options["max-line"])
    for description in options["publish"]:
        ListeningService("publishers", description, publishers).setServiceParent(top)
    site = SubscriberSite(
        SubscribeResource(broker, clock, options["buffer"], options["buffer-bytes"])
    )
    for description in options["subscribe"]:
        ListeningService("subscribers", description, site).setServiceParent(top)
    return top
