"""
Test doubles for the unit tests: a broker that records what publishers hand
it, a subscriber that records what the broker delivers, and a TCP-like
L{StringTransport}.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from attrs import define, evolve, field
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime, ITCPTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import implementer

from logio.auth import Tokens
from logio.filters import Filters
from logio.formats import TextFormat
from logio.history import History
from logio.ingest.http import Ingest
from logio.ingest.sniff import PublisherFactory
from logio.interfaces import (
    IBroker,
    IFilters,
    IFormat,
    IPublication,
    ISubscriber,
    ISubscription,
    Replay,
    Segment,
)
from logio.refusals import Refusals
from logio.settings import Settings
from logio.stats import Stats, TopicInfo
from logio.timerange import TimeRange
from logio.topic import Record, Topic, serverHost
from logio.web.channel import SubscriberSite
from logio.web.site import makeSite

TEXT = TextFormat(serverHost())


@implementer(IPublication)
@define
class FakePublication:
    """
    A publication that tells its L{FakeBroker} what happens to it.
    """

    broker: FakeBroker
    topic: Topic
    protocol: str

    def publish(self, records: list[Record], size: int) -> None:
        self.broker.published.append((self.topic, list(records)))
        self.broker.sizes.append(size)

    def close(self) -> None:
        self.broker.closed.append(self.topic)


@implementer(IBroker)
class FakeBroker:
    """
    Stand in for L{logio.broker.Broker}: remember every publication opened,
    every batch published and every publication closed.
    """

    def __init__(self) -> None:
        self.stats = Stats()
        self.start = 0
        self.history = History(0, 0, lambda owner, count: None)
        self.costlyPatterns: dict[str, None] = {}
        self.opened: list[tuple[Topic, str]] = []
        self.published: list[tuple[Topic, list[Record]]] = []
        self.closed: list[Topic] = []
        self.sizes: list[int] = []
        self.relay = None
        self.epochObservers: list[object] = []

    def deliver(self, topic: Topic, records: list[Record], first: int, size: int) -> None:
        self.published.append((topic, records))

    def changeEpoch(self, epoch: int) -> None:
        self.start = epoch

    def unrelayed(self, topic: Topic | None, count: int) -> None:
        pass

    def publisher(self, topic: Topic, protocol: str) -> IPublication:
        self.opened.append((topic, protocol))
        return FakePublication(self, topic, protocol)

    def subscribe(self, subscriber: ISubscriber) -> ISubscription:
        raise NotImplementedError("publishers do not subscribe")

    def subscriberCount(self) -> int:
        return 0

    def replay(
        self,
        filters: IFilters,
        tail: int,
        after: Optional[int] = None,
        window: Optional[TimeRange] = None,
    ) -> Replay:
        return Replay([])

    def topics(self) -> Sequence[TopicInfo]:
        return []


#: The time of the notices of records lost, in fakes.
TS_LOST = "2016-12-06T22:14:21.448"


@implementer(ISubscriber)
@define(eq=False)
class FakeSubscriber:
    """
    Records what the broker delivers.
    """

    filters: Filters
    format: IFormat = TEXT
    received: list[Segment] = field(factory=list)
    onDeliver: Callable[[], None] | None = None
    aborted: bool = False
    onAbort: Callable[[], None] | None = None
    subscription: ISubscription | None = None
    #: What L{room} says; output lines the broker left unencoded.
    maxBytes: int = 1 << 62
    skipped: int = 0

    def deliver(self, segment: Segment) -> None:
        self.received.append(segment)
        if self.onDeliver is not None:
            self.onDeliver()

    def lost(self, count: int, message: str) -> None:
        self.deliver(Segment(self.format.notice(TS_LOST, message, count), 1, None))

    def room(self) -> int:
        return self.maxBytes

    def skip(self, lines: int) -> None:
        self.skipped += lines

    def close(self) -> Deferred[tuple[int, int]]:
        return succeed((0, 0))

    def abort(self) -> None:
        self.aborted = True
        if self.onAbort is not None:
            self.onAbort()

    def text(self) -> str:
        """
        Everything delivered so far, decoded.
        """
        return b"".join(segment.data for segment in self.received).decode()

    def unsubscribe(self) -> None:
        """
        Close the broker's subscription of this subscriber.
        """
        assert self.subscription is not None
        self.subscription.close()


def publish(broker: IBroker, topic: Topic, records: list[Record]) -> None:
    """
    Publish one batch to C{broker} as a publisher that comes and goes.
    """
    publication = broker.publisher(topic, "test")
    publication.publish(records, sum(len(record[1]) for record in records))
    publication.close()


@implementer(ITCPTransport)
class TCPTransport(StringTransport):
    """
    A L{StringTransport} that is a TCP transport and remembers the socket
    options set on it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.options: dict[str, bool] = {}

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.options["keepalive"] = enabled

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.options["nodelay"] = enabled


def makeTestSite(
    broker: IBroker,
    clock: MemoryReactorClock,
    settings: Optional[Settings] = None,
    tokens: Optional[Tokens] = None,
    protected: bool = False,
) -> SubscriberSite:
    """
    The subscriber port's site as the server builds it, over C{clock}: in
    protected mode only if asked (a L{StringTransport}'s peer is beyond
    this machine).
    """
    settings = evolve(settings or Settings(), public=not protected)
    refusals = Refusals(broker.stats, clock)
    return makeSite(broker, clock, settings, refusals, Ingest(broker, clock, settings), tokens)


def publisherFactory(
    broker: IBroker,
    clock: IReactorTime,
    tokens: Optional[Tokens] = None,
    refusals: Optional[Refusals] = None,
    **settings: Any,
) -> PublisherFactory:
    """
    The publisher port's factory as the server builds it, with the
    settings named (the defaults for the others, but C{public}: a
    L{StringTransport}'s peer is beyond this machine).
    """
    if refusals is None:
        refusals = Refusals(broker.stats, clock)
    settings.setdefault("public", True)
    return PublisherFactory(broker, clock, Settings(**settings), refusals, tokens)
