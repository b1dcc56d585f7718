# -*- test-case-name: tests.test_history -*-
"""
The server's memory of recent records: it numbers every record and keeps
the newest, bounded in records and bytes, for replay to new subscribers.
"""

from __future__ import annotations

from collections import deque
from operator import itemgetter
from typing import Any, Callable, Optional, Protocol

from attrs import define, frozen

from logio.filters import Filters
from logio.topic import Record, Topic

#: What history charges a record besides its text: about what the tuple
#: and the string objects cost.
RECORD_OVERHEAD = 64

_text = itemgetter(1)


def _size(records: list[Record]) -> int:
    return sum(map(len, map(_text, records))) + RECORD_OVERHEAD * len(records)


class Owner(Protocol):
    """
    What history needs of a batch's owner: its topic.
    """

    topic: Topic


@define
class _Batch:
    owner: Any
    first: int
    records: list[Record]
    size: int


@frozen
class Run:
    """
    Consecutive replayed records of one topic.

    @ivar seqs: Each record's sequence number.
    """

    topic: Topic
    records: list[Record]
    seqs: list[int]


@frozen
class Replay:
    """
    What history holds for a new subscriber.

    @ivar runs: The matching records, oldest first.
    @ivar missed: How many records (of any topic) after the id the
        subscriber resumes from are no longer held.
    """

    runs: list[Run]
    missed: int = 0


class History:
    """
    Number records and keep the newest, oldest evicted first.

    @ivar next: The sequence number the next record gets.
    @ivar records: Records held.
    @ivar bytes: What they cost: their text's length plus
        L{RECORD_OVERHEAD} each.
    """

    def __init__(self, maxRecords: int, maxBytes: int, evicted: Callable[[Any, int], None]) -> None:
        self.maxRecords = maxRecords
        self.maxBytes = maxBytes
        self._evicted = evicted
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

    def add(self, owner: Owner, records: list[Record]) -> int:
        """
        Number a batch of C{owner}'s records and keep it, evicting what the
        bounds no longer allow.

        @return: The first record's sequence number; the others follow.
        """
        first = self.next
        self.next = first + len(records)
        if self.maxRecords:
            size = _size(records)
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
            count = len(batch.records)
            gone = max(self.records - self.maxRecords, 0)
            if gone < count and self.bytes - batch.size > self.maxBytes:
                gone = count
            if gone >= count:
                batches.popleft()
                gone, size = count, batch.size
            else:
                # Keep the newest part of the oldest batch: as few records
                # go as both bounds allow.
                excess = self.bytes - self.maxBytes
                size = _size(batch.records[:gone])
                while size < excess:
                    size += len(batch.records[gone][1]) + RECORD_OVERHEAD
                    gone += 1
                batch.records = batch.records[gone:]
                batch.first += gone
                batch.size -= size
                if not batch.records:
                    batches.popleft()
            self.records -= gone
            self.bytes -= size
            self._evicted(batch.owner, gone)

    def replay(self, filters: Filters, tail: int, after: Optional[int] = None) -> Replay:
        """
        The held records that match C{filters}: the newest C{tail} of them,
        or, if C{after} is given, all of those after that sequence number.
        """
        missed = 0
        if after is not None:
            missed = max(self.oldest - (after + 1), 0)
            tail = self.records
        search = filters.log.search if filters.log is not None else None
        matches: dict[int, bool] = {}
        runs: list[Run] = []
        for batch in reversed(self._batches):
            if tail <= 0:
                break
            if after is not None and batch.first + len(batch.records) <= after + 1:
                break
            key = id(batch.owner)
            if key not in matches:
                matches[key] = filters.matchesTopic(batch.owner.topic)
            if not matches[key]:
                continue
            low = 0 if after is None else max(after + 1 - batch.first, 0)
            chosen = range(low, len(batch.records))
            if search is not None:
                records = batch.records
                chosen = [i for i in chosen if search(records[i][1].encode("utf-8", "replace"))]  # type: ignore[assignment]
            chosen = chosen[-tail:] if tail < len(chosen) else chosen
            if not chosen:
                continue
            tail -= len(chosen)
            seqs = [batch.first + i for i in chosen]
            records = [batch.records[i] for i in chosen]
            if runs and runs[-1].topic == batch.owner.topic:
                # A topic's consecutive batches replay as one run.
                last = runs.pop()
                seqs += last.seqs
                records += last.records
            runs.append(Run(batch.owner.topic, records, seqs))
        runs.reverse()
        return Replay(runs, missed)
