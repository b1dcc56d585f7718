# -*- test-case-name: tests.test_broker -*-
"""
The Broker: the one central service.  Publishers hand it batches of records
through a publication per topic; it numbers them, keeps them in history,
and encodes each batch once per group of subscribers that share a format,
a C{log} filter and a C{level} filter.
"""

from __future__ import annotations

import time
from time import thread_time
from typing import Any, Callable, Optional, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from logio.filters import Pattern
from logio.history import History
from logio.interfaces import (
    Encoder,
    IBroker,
    IFilters,
    IFormat,
    IHistory,
    IPublication,
    IRelay,
    ISubscriber,
    ISubscription,
    Replay,
    Segment,
)
from logio.levels import ranks
from logio.route import Group, Route, unkept
from logio.settings import Settings
from logio.stats import Stats, TopicInfo
from logio.timerange import TimeRange
from logio.topic import Record, Topic, formatEpoch

#: How many routes a new subscriber is matched against per reactor turn:
#: topic patterns are bounded in cost per byte (L{logio.filters.MAX_PROGRAM})
#: and topic fields in length, so a turn is bounded however many topics
#: there are.
MATCH_SLICE = 64

#: The CPU time one C{log} pattern may take on one batch before its
#: subscribers are disconnected and the pattern refused from then on: the
#: reactor serves nobody else meanwhile.
MAX_SEARCH_SECONDS = 0.02
#: How many patterns found too costly are remembered.
MAX_COSTLY = 1000
#: The CPU time the C{log} patterns of all subscribers together may take at
#: a stretch, batch after batch; the allowance refills at L{SEARCH_SHARE} of
#: the time that passes.  The subscribers of the patterns left when it is
#: spent are told what they missed.  One pattern takes at most
#: L{MAX_SEARCH_SECONDS} before it is refused, so matching holds the reactor
#: for about this much at most, however many batches arrive at once.
MAX_BATCH_SEARCH_SECONDS = 0.05
SEARCH_SHARE = 0.5
#: How many patterns' costs (CPU seconds per byte searched) are remembered.
MAX_COSTS = 1000
#: Seconds between two log lines about records not searched.
UNSEARCHED_LOG_INTERVAL = 10.0


@implementer(IPublication)
class _Publication:
    """
    One publisher's handle on one topic's route.
    """

    def __init__(self, broker: Broker, route: Route, protocol: str) -> None:
        self._broker = broker
        self._route: Optional[Route] = route
        self._protocol = protocol
        route.publishers += 1

    def publish(self, records: list[Record], size: int) -> None:
        assert self._route is not None, "publishing after close"
        self._broker._publish(self._route, self._protocol, records, size)

    def close(self) -> None:
        route, self._route = self._route, None
        if route is not None:
            route.publishers -= 1
            self._broker._retire(route)


@implementer(ISubscription)
class _Subscription:
    """
    A subscriber's registration: closing it stops deliveries.
    """

    def __init__(self, broker: Broker, subscriber: ISubscriber) -> None:
        self._broker = broker
        self._subscriber = subscriber

    def close(self) -> None:
        self._broker._unsubscribe(self._subscriber)


@implementer(IBroker)
class Broker(Service):
    """
    Fan records out from publishers to subscribers, and keep the newest in
    history.

    @ivar start: The server's start instant, in milliseconds since the epoch.
    """

    log = Logger()

    def __init__(
        self,
        settings: Settings,
        clock: Optional[IReactorTime] = None,
        start: Optional[int] = None,
        history: Optional[IHistory] = None,
    ) -> None:
        """
        @param clock: Where to schedule the matching of new subscribers
            against many topics, in slices; without one, it is done at once.
        @param start: The start instant, in milliseconds since the epoch;
            now if not given.  The first part of every event id, unless a
            C{history} is given: then its C{epoch} is.
        @param history: Where records are numbered and kept for replay
            (chosen in L{logio.server.tap}); a L{History} in memory of
            C{settings}' bounds if not given.
        """
        self.stats = Stats()
        #: The texts of C{log} patterns found too costly to match, oldest first.
        self.costlyPatterns: dict[str, None] = {}
        self._clock = clock
        self._subscribers: dict[ISubscriber, None] = {}
        # The subscribers by the one app they can match (see
        # IFilters.exactApp), and those whose app pattern is another.
        self._byApp: dict[str, dict[ISubscriber, None]] = {}
        self._anyApp: dict[ISubscriber, None] = {}
        self._routes: dict[Topic, Route] = {}
        #: New subscribers still being matched against the routes that
        #: existed when they came, and those routes not matched yet.
        self._pending: dict[ISubscriber, dict[Route, None]] = {}
        if history is None:
            history = History(settings.history, settings.historyBytes, epoch=start)
        self._history = history
        history.evicted = self._evicted
        history.holder = self._holder
        #: With C{--cluster}: what takes the records published here to
        #: every node (L{logio.cluster.relay.Relay}); it hands them back,
        #: numbered, to L{deliver}.
        self.relay: Optional[IRelay] = None
        #: Called with the new epoch when it changes (a cluster node joins
        #: its cluster, or finds it lost its data).
        self.epochObservers: list[Callable[[int], object]] = []
        #: The cost of each C{log} pattern on its last batch, CPU seconds per
        #: byte of text, oldest first.
        self._costs: dict[str, float] = {}
        self._unsearchedLogged = -UNSEARCHED_LOG_INTERVAL
        #: The CPU time patterns may take now, and when it was last refilled.
        self._allowance = MAX_BATCH_SEARCH_SECONDS
        self._refilled = self._now()

    @property
    def start(self) -> int:
        """
        The first part of every event id: the history's epoch.
        """
        return int(self._history.epoch)

    def changeEpoch(self, epoch: int) -> None:
        """
        Number from now on in C{epoch}: ids of the one before are from an
        earlier run.
        """
        if epoch == self._history.epoch:
            return
        self._history.epoch = epoch
        for observer in list(self.epochObservers):
            observer(epoch)

    @property
    def history(self) -> IHistory:
        """
        The records held for replay.
        """
        return self._history

    @property
    def subscribers(self) -> Sequence[ISubscriber]:
        """
        The current subscribers, oldest first.
        """
        return tuple(self._subscribers)

    def subscriberCount(self) -> int:
        return len(self._subscribers)

    def subscribe(self, subscriber: ISubscriber) -> ISubscription:
        """
        With a clock and many topics, matching goes on in slices of
        L{MATCH_SLICE} routes per reactor turn; a route published to before
        its turn is matched first, so nothing is missed meanwhile.
        """
        self._match(subscriber)
        return _Subscription(self, subscriber)

    def _match(self, subscriber: ISubscriber) -> None:
        if self._clock is None or len(self._routes) <= MATCH_SLICE:
            matching = [
                route
                for topic, route in self._routes.items()
                if subscriber.filters.matchesTopic(topic)
            ]
            self._enrol(subscriber)
            for route in matching:
                route.add(subscriber)
            return
        self._enrol(subscriber)
        self._pending[subscriber] = dict.fromkeys(self._routes.values())
        self._clock.callLater(0, self._matchSome, subscriber)

    def _enrol(self, subscriber: ISubscriber) -> None:
        """
        Count C{subscriber} in, and in the index new topics are matched by.
        """
        self._subscribers[subscriber] = None
        app = subscriber.filters.exactApp()
        if app is None:
            self._anyApp[subscriber] = None
        else:
            self._byApp.setdefault(app, {})[subscriber] = None

    def _matchSome(self, subscriber: ISubscriber) -> None:
        remaining = self._pending.get(subscriber)
        if remaining is None:
            return
        for _ in range(min(MATCH_SLICE, len(remaining))):
            route, _ = remaining.popitem()
            if subscriber.filters.matchesTopic(route.topic):
                route.add(subscriber)
        if remaining:
            assert self._clock is not None
            self._clock.callLater(0, self._matchSome, subscriber)
        else:
            del self._pending[subscriber]

    def _matchPending(self, route: Route) -> None:
        """
        Match C{route} now for each new subscriber that has not got to it.
        """
        for subscriber, remaining in self._pending.items():
            if route in remaining:
                del remaining[route]
                if subscriber.filters.matchesTopic(route.topic):
                    route.add(subscriber)

    def _unsubscribe(self, subscriber: ISubscriber) -> None:
        """
        Stop delivering to C{subscriber}; unknown subscribers are ignored.
        """
        if subscriber not in self._subscribers:
            return
        del self._subscribers[subscriber]
        app = subscriber.filters.exactApp()
        if app is None:
            del self._anyApp[subscriber]
        else:
            named = self._byApp[app]
            del named[subscriber]
            if not named:
                del self._byApp[app]
        self._pending.pop(subscriber, None)
        for route in self._routes.values():
            route.remove(subscriber)

    def replay(
        self,
        filters: IFilters,
        tail: int,
        after: Optional[int] = None,
        window: Optional[TimeRange] = None,
    ) -> Replay:
        return self._history.replay(filters, tail, after, window)

    def topics(self) -> Sequence[TopicInfo]:
        """
        The topics published to or held in memory, and those only a store
        holds (from earlier runs).
        """
        known = {info.topic: info for info in self._history.topics()}
        for route in self._routes.values():
            stored = known.get(route.topic)
            known[route.topic] = TopicInfo(
                route.topic,
                max(route.records, stored.records if stored else 0),
                max(route.last, stored.last if stored else ""),
                route.publishers,
            )
        return list(known.values())

    def _route(self, topic: Topic) -> Route:
        """
        The route of C{topic}, made (with its subscribers) if it is new.
        """
        route = self._routes.get(topic)
        if route is None:
            route = self._routes[topic] = Route(topic)
            for subscribers in (self._byApp.get(topic.app, {}), self._anyApp):
                for subscriber in subscribers:
                    if subscriber.filters.matchesTopic(topic):
                        route.add(subscriber)
        return route

    def publisher(self, topic: Topic, protocol: str) -> IPublication:
        route = self._route(topic)
        return _Publication(self, route, protocol)

    def _retire(self, route: Route) -> None:
        """
        Forget a route nobody publishes to and history holds nothing of.
        """
        if not (route.publishers or route.held) and self._routes.get(route.topic) is route:
            del self._routes[route.topic]

    def _holder(self, topic: Topic, count: int, last: str) -> Route:
        """
        The route of a batch of C{topic} that history holds from before
        this run: the topic is known, with its records.
        """
        route = self._route(topic)
        route.held += count
        route.records += count
        route.last = max(route.last, last)
        return route

    def _evicted(self, route: Route, count: int) -> None:
        route.held -= count
        self._retire(route)

    def _publish(self, route: Route, protocol: str, records: list[Record], size: int) -> None:
        """
        Number, keep and fan out a batch of C{route}'s records; or, in a
        cluster, hand it to the relay, which brings it back numbered.
        """
        count = len(records)
        if not count:
            return
        self.stats.recordsIn[protocol] += count
        relay = self.relay
        if relay is not None and relay.send(route.topic, records, size):
            return
        self._keep(route, records, size)

    def deliver(self, topic: Topic, records: list[Record], first: int, size: int) -> None:
        """
        Keep and fan out a batch numbered elsewhere (by the cluster): its
        records are C{first} on.  Records numbered below what history has
        numbered already were delivered before, and are skipped.
        """
        history = self._history
        skip = history.next - first
        if skip > 0:
            if skip >= len(records):
                return
            records = records[skip:]
            first += skip
        route = self._route(topic)
        history.next = first
        self._keep(route, records, size)

    def unrelayed(self, topic: Optional[Topic], count: int) -> None:
        """
        Tell the subscribers of C{topic} (every subscriber, if L{None})
        that C{count} records of the cluster will never reach them, as for
        a drop.
        """
        where = "" if topic is None else f" of {topic.app}/{topic.proc}/{topic.host}"
        message = f"{count} records{where} could not be relayed by the cluster"
        for subscriber in list(self._subscribers):
            if topic is None or subscriber.filters.matchesTopic(topic):
                subscriber.lost(count, message)

    def _keep(self, route: Route, records: list[Record], size: int) -> None:
        """
        Number, keep and fan out a batch of C{route}'s records.
        """
        count = len(records)
        if self._history.maxRecords:
            route.held += count
        first = self._history.add(route, records, size)
        route.records += count
        route.last = records[-1][0]
        if self._pending:
            self._matchPending(route)
        groups = route.members()
        if not groups:
            return
        seqs = range(first, first + count)
        searched: list[Group] = []
        for group in groups:
            encoder, pattern, level, format, subscribers = group
            if pattern is None and level is None:
                self._fanOut(subscribers, encoder, format, records, seqs)
            else:
                searched.append(group)
        if searched:
            self._search(searched, records, first)

    def _search(self, groups: list[Group], records: list[Record], first: int) -> None:
        """
        Deliver to each group with a C{log} pattern or a C{level} the
        records it keeps: the levels are found once for all groups, the
        patterns run cheapest first (by their cost on earlier batches; a new
        one counts as free), within the allowance (see
        L{MAX_BATCH_SEARCH_SECONDS}): the groups left when it is spent are
        not searched, and told so.
        """
        now = self._now()
        allowance = min(
            self._allowance + (now - self._refilled) * SEARCH_SHARE, MAX_BATCH_SEARCH_SECONDS
        )
        self._refilled = now
        texts: list[bytes] = []
        size = 1
        levels: list[int] = []
        costs = self._costs
        if len(groups) > 1:
            groups.sort(key=lambda group: costs.get(group[1].text, 0.0) if group[1] else 0.0)
        total = 0.0
        skipped = 0
        for encoder, pattern, level, format, subscribers in groups:
            chosen: Sequence[int] = range(len(records))
            if level is not None:
                if not levels:
                    levels = ranks(records)
                chosen = [i for i in chosen if levels[i] >= level]
            if pattern is not None:
                if total >= allowance:
                    self._notSearched(subscribers, len(records))
                    skipped += len(subscribers)
                    continue
                if not texts:
                    texts = [record[1].encode("utf-8", "replace") for record in records]
                    size = sum(map(len, texts)) or 1
                search = pattern.search
                began = thread_time()
                chosen = [i for i in chosen if search(texts[i])]
                spent = thread_time() - began
                total += spent
                costs.pop(pattern.text, None)
                costs[pattern.text] = spent / size
                if len(costs) > MAX_COSTS:
                    del costs[next(iter(costs))]
            if chosen:
                self._fanOut(
                    subscribers,
                    encoder,
                    format,
                    [records[i] for i in chosen],
                    [first + i for i in chosen],
                )
            if pattern is not None and spent > MAX_SEARCH_SECONDS:
                self._tooCostly(pattern, subscribers, spent)
        self._allowance = allowance - total
        if skipped:
            if now - self._unsearchedLogged >= UNSEARCHED_LOG_INTERVAL:
                self._unsearchedLogged = now
                self.log.warn(
                    "The log= patterns took more than {ms:.0f} ms of CPU on one batch "
                    "together: {count} records were not searched for {subscribers} subscribers",
                    ms=MAX_BATCH_SEARCH_SECONDS * 1000,
                    count=len(records),
                    subscribers=skipped,
                )

    def _now(self) -> float:
        return time.time() if self._clock is None else self._clock.seconds()

    def _notSearched(self, subscribers: Sequence[ISubscriber], count: int) -> None:
        """
        Tell C{subscribers} that C{count} records were not searched for
        their pattern: the patterns together took all the time one batch
        may have.
        """
        self.stats.recordsUnsearched += count * len(subscribers)
        stamp = formatEpoch(self._now())
        message = (
            f"{count} records were not searched for this subscription's log= pattern: "
            "the log= patterns of this server together took all the time a batch may have"
        )
        for subscriber in subscribers:
            subscriber.deliver(Segment(subscriber.format.notice(stamp, message), 1, None))

    def _tooCostly(
        self, pattern: Pattern, subscribers: Sequence[ISubscriber], spent: float
    ) -> None:
        """
        C{pattern} took C{spent} seconds of CPU on one batch: disconnect its
        subscribers, and refuse it from now on.
        """
        if len(self.costlyPatterns) >= MAX_COSTLY:
            del self.costlyPatterns[next(iter(self.costlyPatterns))]
        self.costlyPatterns[pattern.text] = None
        self.log.warn(
            "The log= pattern {pattern!r} took {ms:.0f} ms of CPU on one batch; "
            "disconnecting its {count} subscribers and refusing it from now on",
            pattern=pattern.text[:200],
            ms=spent * 1000,
            count=len(subscribers),
        )
        for subscriber in subscribers:
            self._unsubscribe(subscriber)
            try:
                subscriber.abort()
            except Exception:
                self.log.failure("Disconnecting {subscriber} failed", subscriber=subscriber)

    def _fanOut(
        self,
        subscribers: Sequence[ISubscriber],
        encoder: Encoder,
        format: IFormat,
        records: Sequence[Record],
        seqs: Sequence[int],
    ) -> None:
        """
        Encode a batch for a group of subscribers, and deliver the same
        segments to each.  One that fails is logged, unsubscribed and
        disconnected; the others still get everything.

        Of a large batch only the newest records that the group's
        most-available subscriber could keep are encoded (see L{unkept});
        each subscriber is told the older ones were dropped, as its queue
        would have dropped them.
        """
        older = unkept(subscribers, encoder, records, seqs)
        skipped = 0
        if older:
            skipped = format.lines(records[:older])
            records, seqs = records[older:], seqs[older:]
        segments = encoder(records, seqs)
        for subscriber in subscribers:
            try:
                if skipped:
                    subscriber.skip(skipped)
                for segment in segments:
                    subscriber.deliver(segment)
            except Exception:
                self.log.failure(
                    "Delivery to {subscriber} failed; disconnecting it", subscriber=subscriber
                )
                self._unsubscribe(subscriber)
                try:
                    subscriber.abort()
                except Exception:
                    self.log.failure("Disconnecting {subscriber} failed", subscriber=subscriber)
        lines = skipped
        for segment in segments:
            lines += segment.lines
        self.stats.linesOut[format.name] += len(subscribers) * lines

    def stopService(self) -> Deferred[Any]:
        """
        End every subscription cleanly and wait (a few seconds at most) for
        their connections to flush and close.
        """
        super().stopService()
        # Closing a subscription unsubscribes it: loop over a copy.
        closing = [subscriber.close() for subscriber in tuple(self._subscribers)]

        def report(results: list[tuple[bool, Any]]) -> None:
            lost = [result for ok, result in results if ok and result != (0, 0)]
            self.log.info(
                "Subscriptions ended: {lines} output lines could not be delivered, and "
                "{bytes} bytes of what was written before ({subscribers} subscribers "
                "did not read them in time)",
                lines=sum(lines for lines, _ in lost),
                bytes=sum(size for _, size in lost),
                subscribers=len(lost),
            )

        return DeferredList(closing, consumeErrors=True).addCallback(report)
