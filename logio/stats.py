# -*- test-case-name: tests.test_web -*-
"""
What the server counts, as plain numbers the hot paths add to; the
C{/metrics} and C{/topics} resources read them.
"""

from __future__ import annotations

from collections import Counter

from attrs import define, field, frozen

from logio.topic import Topic


@define
class Stats:
    """
    Counters since start-up.

    @ivar recordsIn: Records published, by wire protocol.
    @ivar linesOut: Output lines handed to subscribers, by format.
    @ivar linesDropped: Output lines dropped for slow subscribers, by format.
    @ivar bytesOut: Bytes written to subscribers.
    @ivar recordsUnsearched: Records not searched for a subscriber's C{log}
        pattern, because the patterns together took all the time a batch
        may have (once per subscriber).
    @ivar publishers: Publisher connections open now.
    @ivar refusals: Connections or requests refused, by side
        (C{publisher}, C{subscriber}).
    """

    recordsIn: Counter[str] = field(factory=Counter)
    linesOut: Counter[str] = field(factory=Counter)
    linesDropped: Counter[str] = field(factory=Counter)
    bytesOut: int = 0
    recordsUnsearched: int = 0
    publishers: int = 0
    refusals: Counter[str] = field(factory=Counter)


@frozen
class TopicInfo:
    """
    What C{/topics} says of one topic.

    @ivar records: Records published to it since start-up.
    @ivar last: The output timestamp of its last record.
    @ivar publishers: Publishers connected to it now.
    """

    topic: Topic
    records: int
    last: str
    publishers: int
