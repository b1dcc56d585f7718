# -*- test-case-name: tests.test_store -*-
"""
Reading the store's records back for a subscription: the batches in a
range of sequence numbers (and of time: a batch whose records all lie
outside the range is never decoded), filtered as live records are, one
batch at a time, so the caller can read a few batches per reactor turn.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Iterator, Optional

from logio.filters import selected
from logio.interfaces import IFilters, Run
from logio.packing import unpack
from logio.timerange import TimeRange
from logio.topic import Record, Topic

#: Batches read per statement.
PAGE = 32


class Reader:
    """
    One subscription's read of the store.
    """

    def __init__(
        self, connection: sqlite3.Connection, filters: IFilters, window: Optional[TimeRange]
    ) -> None:
        self._connection = connection
        self._filters = filters
        self._window = window
        #: Each topic id read: its topic if the filters take it, else None.
        self._topics: dict[int, Optional[Topic]] = {}

    def _where(self) -> tuple[str, list[Any]]:
        """
        The conditions on a batch's times that the window sets.
        """
        clauses, values = "", []
        if self._window is not None:
            clauses += " AND newest >= ?"
            values.append(self._window.since)
            if self._window.until is not None:
                clauses += " AND oldest <= ?"
                values.append(self._window.until)
        return clauses, values

    def oldestFirst(self, low: int, below: int) -> Iterator[Optional[Run]]:
        """
        The matching records from seq C{low} to before C{below}, oldest
        first: a run per batch that has any, L{None} for one that has none.

        Read a page of batches per statement: a statement left open across
        reactor turns would keep SQLite from checkpointing its log.
        """
        connection = self._connection
        row = connection.execute(
            "SELECT MAX(first) FROM batches WHERE first <= ?", (low,)
        ).fetchone()
        position = (row[0] if row and row[0] is not None else low) - 1
        if self._window is not None:
            # The first batch with a record as new as the range's start,
            # from the index on the newest times.
            row = connection.execute(
                "SELECT MIN(first) FROM batches WHERE newest >= ?", (self._window.since,)
            ).fetchone()
            if row[0] is None:
                return
            position = max(position, row[0] - 1)
        clauses, values = self._where()
        while True:
            rows = connection.execute(
                "SELECT first, count, topic, records FROM batches WHERE first > ? AND first < ?"
                f"{clauses} ORDER BY first LIMIT {PAGE}",
                [position, below, *values],
            ).fetchall()
            if not rows:
                return
            for first, count, topic, packed in rows:
                yield self._select(first, count, topic, packed, low, below)
            position = rows[-1][0]

    def newest(self, need: int, below: int) -> Iterator[Optional[Run]]:
        """
        The newest C{need} matching records before C{below}: L{None} for
        each batch read while looking for them, then their runs, oldest
        first.
        """
        clauses, values = self._where()
        found: list[Run] = []
        count = 0
        position = below
        while count < need:
            rows = self._connection.execute(
                f"SELECT first, count, topic, records FROM batches WHERE first < ?{clauses} "
                f"ORDER BY first DESC LIMIT {PAGE}",
                [position, *values],
            ).fetchall()
            if not rows:
                break
            for first, size, topic, packed in rows:
                run = self._select(first, size, topic, packed, 1, below)
                if run is not None:
                    keep = need - count
                    if len(run.records) > keep:
                        run = Run(run.topic, run.records[-keep:], run.seqs[-keep:])
                    found.append(run)
                    count += len(run.records)
                    if count >= need:
                        break
                yield None
            position = rows[-1][0]
        yield from reversed(found)

    def _select(
        self, first: int, count: int, topicId: int, packed: bytes, low: int, below: int
    ) -> Optional[Run]:
        """
        The records of one batch that the subscription takes, as a run.
        """
        topic = self._topic(topicId)
        if topic is None:
            return None
        records: list[Record] = unpack(packed, count)
        indices = range(max(low - first, 0), min(below - first, len(records)))
        chosen = selected(self._filters, self._window, records, indices)
        if not chosen:
            return None
        return Run(topic, [records[i] for i in chosen], [first + i for i in chosen])

    def _topic(self, ident: int) -> Optional[Topic]:
        """
        The topic of a topic id, if the filters take it.
        """
        if ident not in self._topics:
            app, proc, host = self._connection.execute(
                "SELECT app, proc, host FROM topics WHERE id = ?", (ident,)
            ).fetchone()
            topic = Topic(app, proc, host)
            self._topics[ident] = topic if self._filters.matchesTopic(topic) else None
        return self._topics[ident]
