# -*- test-case-name: tests.test_history -*-
"""
The server's memory of recent records: it numbers every record and keeps
the newest, bounded in records and bytes, for replay to new subscribers.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Iterator, Optional, Protocol, Union

from attrs import define
from twisted.internet.defer import Deferred
from zope.interface import implementer

from logio.filters import selected
from logio.interfaces import IFilters, IHistory, Replay, Run
from logio.stats import TopicInfo
from logio.timerange import TimeRange
from logio.topic import Record, Topic

#: What history charges a record besides its size: about what the tuple
#: and the string objects cost.
RECORD_OVERHEAD = 64


class Owner(Protocol):
    """
    What history needs of a batch's owner: its topic.
    """

    topic: Topic


@define
class _Batch:
    """
    One publish call's records.  The oldest C{skip} of them are evicted
    already (the list is not copied to drop them): the record at C{skip}
    has sequence number C{first}.  C{size} is what the rest cost.
    """

    owner: Any
    first: int
    records: list[Record]
    size: int
    skip: int = 0


@implementer(IHistory)
class History:
    """
    Number records and keep the newest, oldest evicted first.

    @ivar next: The sequence number the next record gets.
    @ivar records: Records held.
    @ivar bytes: What they cost: the input size their publishers gave for
        them, plus L{RECORD_OVERHEAD} each.  Evicting part of a batch frees
        its share of the batch's size, so the count is exact for whole
        batches and off by less than one batch's size otherwise.
    """

    def __init__(
        self,
        maxRecords: int,
        maxBytes: int,
        evicted: Callable[[Any, int], None] = lambda owner, count: None,
        epoch: Optional[int] = None,
    ) -> None:
        """
        @param epoch: The first part of this run's event ids: its start in
            milliseconds since the epoch, now if not given.
        """
        self.maxRecords = maxRecords
        self.maxBytes = maxBytes
        self.evicted = evicted
        #: Never called: a history in memory holds nothing from before.
        self.holder: Callable[[Topic, int, str], Any] = lambda topic, count, last: None
        self.epoch = int(time.time() * 1000) if epoch is None else epoch
        self._batches: deque[_Batch] = deque()
        self.next = 1
        self.records = 0
        self.bytes = 0

    @property
    def oldest(self) -> int:
        """
        The sequence number of the oldest record held (L{next} when none is).
        """
        return self._batches[0].first if self._batches else self.next

    def add(self, owner: Owner, records: list[Record], size: int) -> int:
        """
        Number a batch of C{owner}'s records and keep it, evicting what the
        bounds no longer allow.

        @param size: About how many bytes of input the batch took (its
            publisher has counted them already, which is cheaper than
            measuring every record again).
        @return: The first record's sequence number; the others follow.
        """
        first = self.next
        self.next = first + len(records)
        if self.maxRecords:
            size += RECORD_OVERHEAD * len(records)
            self._batches.append(_Batch(owner, first, records, size))
            self.records += len(records)
            self.bytes += size
            if self.records > self.maxRecords or self.bytes > self.maxBytes:
                self._evict()
        return first

    def _evict(self) -> None:
        batches = self._batches
        while self.records > self.maxRecords or self.bytes > self.maxBytes:
            batch = batches[0]
            left = len(batch.records) - batch.skip
            gone = max(self.records - self.maxRecords, 0)
            excess = self.bytes - self.maxBytes
            if excess > 0:
                # As few records as free the excess at the batch's average size.
                gone = max(gone, -(-excess * left // batch.size))
            if gone >= left:
                batches.popleft()
                gone, freed = left, batch.size
            else:
                freed = batch.size * gone // left
                batch.skip += gone
                batch.first += gone
                batch.size -= freed
            self.records -= gone
            self.bytes -= freed
            self.evicted(batch.owner, gone)

    def clear(self) -> None:
        """
        Forget every record held (a cluster node whose epoch changes: the
        records of two epochs are never held together).
        """
        batches, self._batches = self._batches, deque()
        self.records = self.bytes = 0
        for batch in batches:
            self.evicted(batch.owner, len(batch.records) - batch.skip)

    def metrics(self) -> list[tuple[str, str, str, float]]:
        return []

    def topics(self) -> list[TopicInfo]:
        return []

    def deeper(
        self,
        filters: IFilters,
        need: Optional[int],
        after: Optional[int],
        window: Optional[TimeRange],
        below: int,
    ) -> Optional[Iterator[Union[Run, None, Deferred[Any]]]]:
        # Memory holds nothing older than what replay reads.
        return None

    def replay(
        self,
        filters: IFilters,
        tail: int,
        after: Optional[int] = None,
        window: Optional[TimeRange] = None,
    ) -> Replay:
        """
        The held records that match C{filters}, and whose time is in
        C{window} if one is given: the newest C{tail} of them, or, if
        C{after} is given, all of those after that sequence number.
        """
        missed = 0
        if after is not None:
            missed = max(self.oldest - (after + 1), 0)
            tail = self.records
        matches: dict[int, bool] = {}
        runs: list[Run] = []
        for batch in reversed(self._batches):
            if tail <= 0:
                break
            end = batch.first + len(batch.records) - batch.skip
            if after is not None and end <= after + 1:
                break
            key = id(batch.owner)
            if key not in matches:
                matches[key] = filters.matchesTopic(batch.owner.topic)
            if not matches[key]:
                continue
            # Indices into the batch's list, and the seq of index 0.
            base = batch.first - batch.skip
            low = batch.skip if after is None else max(after + 1 - base, batch.skip)
            chosen = selected(filters, window, batch.records, range(low, len(batch.records)))
            chosen = chosen[-tail:] if tail < len(chosen) else chosen
            if not chosen:
                continue
            tail -= len(chosen)
            seqs = [base + i for i in chosen]
            records = [batch.records[i] for i in chosen]
            if runs and runs[-1].topic == batch.owner.topic:
                # A topic's consecutive batches replay as one run.
                last = runs.pop()
                seqs += last.seqs
                records += last.records
            runs.append(Run(batch.owner.topic, records, seqs))
        runs.reverse()
        return Replay(runs, missed)
