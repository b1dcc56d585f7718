"""
The Broker: the one central service.  Publisher protocols hand it batches of
records; it formats each record once and fans the bytes out to every
subscriber whose filters match.
"""

from __future__ import annotations

import re
from functools import lru_cache, partial
from typing import Any, Callable, Mapping, Optional, Sequence

import re2
from attrs import define, field, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from zope.interface import implementer

from logio.interfaces import IBroker, ISubscriber
from logio.topic import Record, Topic

#: An unanchored search in UTF-8 text: a match (true) or L{None}.
Search = Callable[[bytes], object]

FILTER_FIELDS = ("app", "proc", "host", "log")

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
# RE2 is linear in the text, but a big counted repetition (a[ab]{999}c)
# makes the constant huge: hundreds of milliseconds per 64 KiB record, and
# megabytes of automaton per pattern.  Such counts are refused, and each
# pattern's memory is capped.
_OPTIONS.max_mem = 1 << 20
MAX_REPEAT = 100
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")


class BadFilter(ValueError):
    """
    A filter parameter is not a valid RE2 regular expression.
    """

    def __init__(self, name: str, pattern: str, reason: str) -> None:
        super().__init__(f"bad regular expression for {name!r}: {pattern!r}: {reason}")
        self.name = name


#: Characters with a meaning in RE2 syntax; a pattern without any of them is
#: a plain substring search.
_SPECIAL = frozenset("\\.^$|?*+()[]{}")


@lru_cache(maxsize=128)
def compileFilter(name: str, pattern: str) -> Optional[Search]:
    """
    Compile one filter pattern into an unanchored search, or L{None} if the
    pattern is empty (which matches everything).  The same pattern gives the
    same search object, so subscribers sharing a C{log} filter share its
    work.

    @raise BadFilter: If C{pattern} is not valid RE2 syntax.
    """
    if not pattern:
        return None
    if _SPECIAL.isdisjoint(pattern):
        return partial(_contains, pattern.encode("utf-8", "surrogatepass"))
    for low, high in _REPEAT.findall(pattern):
        if max(int(low), int(high or 0)) > MAX_REPEAT:
            raise BadFilter(
                name, pattern, f"counted repetitions above {{{MAX_REPEAT}}} make matching too slow"
            )
    try:
        # A bytes pattern, searched in UTF-8 text: RE2 matches the same
        # characters (its encoding is UTF-8 either way), and a search costs
        # less than half as much from Python as one on a str.  A lone
        # surrogate keeps its own bytes, which no UTF-8 text holds: it
        # matches nothing (replaced by "?", it would be a quantifier).
        compiled = re2.compile(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise BadFilter(name, pattern, str(reason)) from None
    return compiled.search


def _contains(literal: bytes, text: bytes) -> Optional[bool]:
    """
    The search for a pattern without special characters: as RE2 would
    answer, but without its per-call cost.
    """
    return True if literal in text else None


@frozen
class Filters:
    """
    What one subscriber asked for: an unanchored RE2 search per field, or
    L{None} for a field that matches everything.
    """

    app: Optional[Search] = None
    proc: Optional[Search] = None
    host: Optional[Search] = None
    log: Optional[Search] = None

    @classmethod
    def fromQuery(cls, query: Mapping[str, str]) -> Filters:
        """
        Build filters from query parameters already reduced to one string
        each.

        @raise BadFilter: If a pattern does not compile.
        """
        return cls(**{name: compileFilter(name, query.get(name, "")) for name in FILTER_FIELDS})

    def matchesTopic(self, topic: Topic) -> bool:
        """
        Whether records from C{topic} can reach this subscriber (the C{log}
        filter is applied per record, not here).
        """
        return all(
            search is None or search(value.encode("utf-8", "replace")) is not None
            for search, value in (
                (self.app, topic.app),
                (self.proc, topic.proc),
                (self.host, topic.host),
            )
        )


#: The subscribers of a route as publish loops over them: those without a
#: log filter, then each log filter with the subscribers sharing it.
Members = tuple[tuple[ISubscriber, ...], tuple[tuple[Search, tuple[ISubscriber, ...]], ...]]


@define
class _Route:
    """
    The subscribers of one topic, cached: filters are evaluated once per
    (subscriber, topic), not per record.

    Subscribers with the same log filter share one group, so the filter
    runs once per record for all of them.  Adding and removing one costs the
    same however many there are; publish loops over an immutable snapshot,
    rebuilt after a change, so a delivery that makes a subscriber go away
    cannot make it skip another.
    """

    prefix: str
    _plain: dict[ISubscriber, None] = field(factory=dict)
    _filtered: dict[Search, dict[ISubscriber, None]] = field(factory=dict)
    _members: Members | None = ((), ())

    def add(self, subscriber: ISubscriber) -> None:
        search = subscriber.filters.log
        if search is None:
            self._plain[subscriber] = None
        else:
            self._filtered.setdefault(search, {})[subscriber] = None
        self._members = None

    def remove(self, subscriber: ISubscriber) -> None:
        search = subscriber.filters.log
        group = self._plain if search is None else self._filtered.get(search, {})
        if subscriber not in group:
            return
        del group[subscriber]
        if search is not None and not group:
            del self._filtered[search]
        self._members = None

    def members(self) -> Members:
        """
        The current subscribers, as a snapshot.
        """
        if self._members is None:
            self._members = (
                tuple(self._plain),
                tuple((search, tuple(group)) for search, group in self._filtered.items()),
            )
        return self._members


#: A piece of output for L{ISubscriber.deliver}: data, line count, whole.
Segment = tuple[bytes, int, bool]


def pack(lines: Sequence[str], prefix: str) -> list[Segment]:
    """
    Encode formatted output lines into as few segments as possible.

    Each line is C{<ts><prefix><text>\\n}, all with the same C{prefix}.  Usually every text is one
    physical line and the result is one segment.  A multi-line text gets
    the timestamp and prefix repeated on each of its physical lines and
    becomes a segment of its own, so a subscriber's queue can drop it whole.
    """
    text = "".join(lines)
    count = text.count("\n")
    if count == len(lines):
        return [(text.encode("utf-8", "replace"), count, True)]
    segments: list[Segment] = []
    run: list[str] = []
    for line in lines:
        physical = line.count("\n")
        if physical == 1:
            run.append(line)
            continue
        if run:
            segments.append(("".join(run).encode("utf-8", "replace"), len(run), True))
            run = []
        head = line[: line.index(prefix) + len(prefix)]
        line = line.replace("\n", "\n" + head, physical - 1)
        segments.append((line.encode("utf-8", "replace"), physical, False))
    if run:
        segments.append(("".join(run).encode("utf-8", "replace"), len(run), True))
    return segments


@implementer(IBroker)
class Broker(Service):
    """
    Fan records out from publishers to subscribers.

    @ivar published: Records published since start-up.
    @ivar delivered: Output lines handed to subscribers since start-up.
    """

    log = Logger()

    def __init__(self) -> None:
        self._subscribers: dict[ISubscriber, None] = {}
        self._routes: dict[Topic, _Route] = {}
        self.published = 0
        self.delivered = 0

    @property
    def subscribers(self) -> Sequence[ISubscriber]:
        """
        The current subscribers, oldest first.
        """
        return tuple(self._subscribers)

    @property
    def subscriberCount(self) -> int:
        """
        How many subscribers there are (without copying them).
        """
        return len(self._subscribers)

    def subscribe(self, subscriber: ISubscriber) -> None:
        matching = [
            route for topic, route in self._routes.items() if subscriber.filters.matchesTopic(topic)
        ]
        self._subscribers[subscriber] = None
        for route in matching:
            route.add(subscriber)

    def unsubscribe(self, subscriber: ISubscriber) -> None:
        if subscriber not in self._subscribers:
            return
        del self._subscribers[subscriber]
        for route in self._routes.values():
            route.remove(subscriber)

    def _route(self, topic: Topic) -> _Route:
        route = _Route(topic.prefix())
        for subscriber in self._subscribers:
            if subscriber.filters.matchesTopic(topic):
                route.add(subscriber)
        self._routes[topic] = route
        return route

    def forget(self, topic: Topic) -> None:
        self._routes.pop(topic, None)

    def publish(self, topic: Topic, records: list[Record]) -> None:
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        self.published += len(records)
        plain, filtered = route.members()
        if not (plain or filtered):
            return
        lines = [f"{ts}{route.prefix}{text}\n" for ts, text in records]
        if plain:
            self._fanOut(plain, pack(lines, route.prefix))
        if not filtered:
            return
        texts = [text.encode("utf-8", "replace") for _, text in records]
        for search, subscribers in filtered:
            chosen = [line for line, text in zip(lines, texts, strict=True) if search(text)]
            if chosen:
                self._fanOut(subscribers, pack(chosen, route.prefix))

    def _fanOut(self, subscribers: Sequence[ISubscriber], segments: list[Segment]) -> None:
        """
        Deliver the same segments to each subscriber.  One that fails is
        logged, unsubscribed and disconnected; the others still get
        everything.
        """
        for subscriber in subscribers:
            try:
                for data, count, whole in segments:
                    subscriber.deliver(data, count, whole)
            except Exception:
                self.log.failure(
                    "Delivery to {subscriber} failed; disconnecting it", subscriber=subscriber
                )
                self.unsubscribe(subscriber)
                try:
                    subscriber.abort()
                except Exception:
                    self.log.failure("Disconnecting {subscriber} failed", subscriber=subscriber)
        self.delivered += len(subscribers) * sum(segment[1] for segment in segments)

    def stopService(self) -> Deferred[Any]:
        """
        End every subscription cleanly and wait (a few seconds at most) for
        their connections to flush and close.
        """
        super().stopService()
        # Closing a subscription unsubscribes it: loop over a copy.
        closing = [subscriber.close() for subscriber in tuple(self._subscribers)]
        return DeferredList(closing, consumeErrors=True)
