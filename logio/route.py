# -*- test-case-name: tests.test_broker -*-
"""
A topic's route through the broker: its subscribers, grouped so that a
batch is searched and encoded once per group, and what is known of the
topic.
"""

from __future__ import annotations

from typing import Optional, Sequence

from attrs import define, field

from logio.filters import Pattern
from logio.interfaces import Encoder, IFormat, ISubscriber
from logio.topic import Record, Topic

#: One group of a route as publish loops over it: the encoder of its
#: format, its C{log} pattern (or L{None}), the least severe level it keeps
#: (or L{None}), its format, its members.
Group = tuple[Encoder, Optional[Pattern], Optional[int], IFormat, tuple[ISubscriber, ...]]

#: Batches of at most this many records are encoded whole, without asking
#: the subscribers how much they can keep.
WHOLE_BATCH = 64


def unkept(
    subscribers: Sequence[ISubscriber],
    encoder: Encoder,
    records: Sequence[Record],
    seqs: Sequence[int],
) -> int:
    """
    How many of the oldest C{records} no subscriber of a group could keep:
    the output of the newer ones alone is more than the most-available
    subscriber's L{room<ISubscriber.room>}, so each would drop these, and
    they need not be encoded.  Counted from the least a record's output can
    be (an empty stamp and text): no more records are encoded than would
    fill that room at their least, and one more.
    """
    count = len(records)
    if count <= WHOLE_BATCH:
        return 0
    room = max(subscriber.room() for subscriber in subscribers)
    least = sum(len(segment.data) for segment in encoder([("", "", None)], seqs[:1]))
    return max(0, count - (room // max(least, 1) + 1))


@define(eq=False)
class Route:
    """
    The subscribers of one topic, cached: filters are evaluated once per
    (subscriber, topic), not per record.  Also what is known of the topic:
    its publishers, records published and held in history.

    Subscribers with the same format, C{log} pattern and C{level} share one
    group: the pattern runs and the batch is encoded once for all of them.  Adding
    and removing one costs the same however many there are; publish loops
    over an immutable snapshot, rebuilt after a change, so a delivery that
    makes a subscriber go away cannot make it skip another.
    """

    topic: Topic
    publishers: int = 0
    records: int = 0
    last: str = ""
    held: int = 0
    _groups: dict[tuple[IFormat, Optional[Pattern], Optional[int]], dict[ISubscriber, None]] = (
        field(factory=dict)
    )
    _encoders: dict[IFormat, Encoder] = field(factory=dict)
    _members: Optional[tuple[Group, ...]] = ()

    def add(self, subscriber: ISubscriber) -> None:
        key = (subscriber.format, subscriber.filters.log, subscriber.filters.level)
        self._groups.setdefault(key, {})[subscriber] = None
        self._members = None

    def remove(self, subscriber: ISubscriber) -> None:
        key = (subscriber.format, subscriber.filters.log, subscriber.filters.level)
        group = self._groups.get(key, {})
        if subscriber not in group:
            return
        del group[subscriber]
        if not group:
            del self._groups[key]
        self._members = None

    def members(self) -> tuple[Group, ...]:
        """
        The current groups, as a snapshot, those that take every record
        first.
        """
        if self._members is None:
            groups: list[Group] = []
            for (format, pattern, level), subscribers in self._groups.items():
                encoder = self._encoders.get(format)
                if encoder is None:
                    encoder = self._encoders[format] = format.encoder(self.topic)
                groups.append((encoder, pattern, level, format, tuple(subscribers)))
            groups.sort(key=lambda group: not (group[1] is None and group[2] is None))
            self._members = tuple(groups)
        return self._members
