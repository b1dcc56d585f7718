# -*- test-case-name: tests.test_e2e_cluster -*-
"""
A cluster node's history: the newest records in memory, as on a server
alone, and older ones read from the cluster's stream in Redis, where every
entry's id is the sequence number of its first record (C{<seq>-0}), so a
range of numbers is a range of ids.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Union

from twisted.internet.defer import Deferred

from logio.cluster.entries import decodeBatches
from logio.cluster.scripts import STREAM
from logio.filters import selected
from logio.history import History
from logio.interfaces import IFilters, Run
from logio.timerange import TimeRange

#: Entries one read of the stream takes.
PAGE = 50
#: The most records a C{tail} takes from the stream: they are held until
#: the newest are found.
MAX_STREAM_TAIL = 100_000

_Step = Union[Run, None, Deferred[Any]]


class SharedHistory(History):
    """
    See the module docstring.

    @ivar relay: The node's link to the cluster (set once it is made); the
        stream is read only while it is joined.
    """

    relay: Any = None

    def deeper(
        self,
        filters: IFilters,
        need: Optional[int],
        after: Optional[int],
        window: Optional[TimeRange],
        below: int,
    ) -> Optional[Iterator[_Step]]:
        relay = self.relay
        connection = None if relay is None or not relay.joined else relay.connection
        low = 1 if after is None else after + 1
        if connection is None or below <= low or (need is not None and need <= 0):
            return None
        reader = _Reader(connection, STREAM, filters, window)
        if need is None:
            return reader.oldestFirst(low, below)
        return reader.newest(min(need, MAX_STREAM_TAIL), below)


class _Reader:
    """
    One subscription's read of the stream.
    """

    def __init__(
        self, connection: Any, stream: str, filters: IFilters, window: Optional[TimeRange]
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._filters = filters
        self._window = window

    def _page(self, command: str, start: str, end: str, got: list[Any]) -> Deferred[Any]:
        """
        Ask for a page of entries; C{got} gets the reply (an empty list if
        the read fails: the replay ends there).
        """
        answer = self._connection.execute(command, self._stream, start, end, "COUNT", PAGE)
        answer.addCallbacks(got.extend, lambda reason: None)
        return answer

    def oldestFirst(self, low: int, below: int) -> Iterator[_Step]:
        """
        The matching records from seq C{low} to before C{below}, oldest
        first.
        """
        got: list[Any] = []
        # The entry holding C{low}, if it starts before it.
        yield self._page("XREVRANGE", f"{low}", "-", got)
        start = got[0][0].decode() if got else "-"
        while True:
            got = []
            yield self._page("XRANGE", start, f"{below - 1}", got)
            if not got:
                return
            for _, fields in got:
                yield from self._select(fields, low, below)
            start = "(" + got[-1][0].decode()

    def newest(self, need: int, below: int) -> Iterator[_Step]:
        """
        The newest C{need} matching records before C{below}, oldest first.
        """
        found: list[list[Run]] = []
        count = 0
        end = f"{below - 1}"
        while count < need:
            got: list[Any] = []
            yield self._page("XREVRANGE", end, "-", got)
            if not got:
                break
            for _, fields in got:
                kept: list[Run] = []
                for run in reversed([run for run in self._select(fields, 1, below) if run]):
                    keep = need - count
                    if keep <= 0:
                        break
                    if len(run.records) > keep:
                        run = Run(run.topic, run.records[-keep:], run.seqs[-keep:])
                    kept.append(run)
                    count += len(run.records)
                found.append(kept[::-1])
                yield None
                if count >= need:
                    break
            end = "(" + got[-1][0].decode()
        # Found newest entry first.
        for runs in reversed(found):
            yield from runs

    def _select(self, fields: list[bytes], low: int, below: int) -> Iterator[Optional[Run]]:
        """
        The runs of one entry that the subscription takes (a note holds
        none).
        """
        entry = dict(zip(fields[::2], fields[1::2], strict=True))
        if b"s" not in entry:
            return
        first = int(entry[b"s"])
        runs = []
        for topic, records, _ in decodeBatches(entry[b"d"]):
            start = first
            first += len(records)
            if not self._filters.matchesTopic(topic):
                continue
            indices = range(max(low - start, 0), min(below - start, len(records)))
            chosen = selected(self._filters, self._window, records, indices)
            if chosen:
                runs.append(Run(topic, [records[i] for i in chosen], [start + i for i in chosen]))
        if not runs:
            yield None
        yield from runs
