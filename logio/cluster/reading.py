# -*- test-case-name: tests.test_e2e_cluster -*-
"""
How a cluster node reads the stream: the newest entries into history when
it first joins, then every entry after the last one delivered, a page read
ahead while the one before is delivered a slice at a time.  Part of
L{logio.cluster.relay.Relay}, whose state it shares.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Iterable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from logio.cluster.address import RedisAddress
from logio.cluster.entries import EntryError, decodeBatches
from logio.cluster.protocol import RedisError, RedisProtocol
from logio.cluster.scripts import STREAM
from logio.history import History
from logio.interfaces import IBroker
from logio.topic import Record, Topic

#: How long one read of the stream waits for entries, in milliseconds.
BLOCK_MS = 1000
#: Entries one read takes at most.
READ_COUNT = 100
#: Records delivered from the stream in one reactor turn, about.
SLICE_RECORDS = 4096
#: Entries one read of the stream's end takes, loading history.
LOAD_COUNT = 100
#: Entries read that a node remembers, to leave out of the notes of what
#: other nodes could not relay.
RECENT_ENTRIES = 100_000


class StreamReading:
    """
    The reading half of L{logio.cluster.relay.Relay}.
    """

    log: Logger
    address: RedisAddress
    node: str
    joined: bool
    relayedIn: int
    bytesIn: int
    missed: int
    _broker: IBroker
    _history: History
    _reactor: IReactorTime
    _readConnection: Optional[RedisProtocol]
    _reading: bool
    _loading: bool
    _generation: int
    _pending: deque[Any]
    _drainCall: Optional[IDelayedCall]
    _lastId: Optional[bytes]
    _readId: Optional[bytes]
    _expected: Optional[int]
    _clusterNext: int
    _alone: set[int]
    _recent: dict[tuple[bytes, int], None]

    def _cameBack(self, number: int) -> Optional[list[tuple[Topic, list[Record], int]]]:
        """
        This node's entry C{number} came back from the stream: its batches,
        each with the bytes it took, if they are still at hand.
        """
        raise NotImplementedError()

    def _startReading(self) -> None:
        """
        Read once joined: first, the first time, the stream's newest
        records into history; then on from the last entry delivered.
        """
        connection = self._readConnection
        if connection is None or not self.joined:
            return
        self._generation += 1
        self._pending.clear()
        if self._lastId is None:
            if not self._loading:
                self._loading = True
                self._load(connection, [], b"+", self._generation)
            return
        self._readId = self._lastId
        self._read(connection)

    def _load(
        self, connection: RedisProtocol, entries: list[Any], end: bytes, generation: int
    ) -> None:
        """
        Read the stream's newest entries, newest first, until history is
        full or the stream read whole; then hold them, oldest first.
        """
        held = sum(int(_fields(entry[1]).get(b"n", 0)) for entry in entries)
        if entries and held >= self._history.maxRecords:
            self._loaded(connection, entries, generation)
            return
        answer = connection.execute("XREVRANGE", STREAM, end, "-", "COUNT", LOAD_COUNT)

        def page(reply: Any) -> None:
            if not reply:
                self._loaded(connection, entries, generation)
                return
            entries.extend(reply)
            self._load(connection, entries, b"(" + reply[-1][0], generation)

        answer.addCallbacks(page, self._readFailed)

    def _loaded(self, connection: RedisProtocol, entries: list[Any], generation: int) -> None:
        self._loading = False
        if generation != self._generation or not self.joined:
            # The node left (and maybe joined again) meanwhile: load anew.
            self._startReading()
            return
        history = self._history
        for _, fields in reversed(entries):
            entry = _fields(fields)
            if b"s" not in entry:
                continue
            first = int(entry[b"s"])
            for topic, records, size in decodeBatches(entry[b"d"]):
                owner = history.holder(topic, len(records), records[-1][0])
                history.next = first
                history.add(owner, records, size)
                first += len(records)
            self._expected = first
        self._lastId = self._readId = entries[0][0] if entries else b"0-0"
        self._read(connection)

    def _read(self, connection: Optional[RedisProtocol]) -> None:
        """
        Ask for the entries after the last one received, unless a read is
        under way: one page is read ahead while the one before is
        delivered.
        """
        if self._reading or not self.joined or connection is not self._readConnection:
            return
        assert connection is not None and self._readId is not None
        self._reading = True
        generation = self._generation
        answer = connection.execute(
            "XREAD", "COUNT", READ_COUNT, "BLOCK", BLOCK_MS, "STREAMS", STREAM, self._readId
        )

        def got(reply: Any) -> None:
            self._reading = False
            if generation != self._generation or not self.joined:
                # Read again from where this node now is.
                self._read(self._readConnection)
                return
            entries = reply[0][1] if reply else []
            if entries:
                self._readId = entries[-1][0]
                self._pending.extend(entries)
            if len(self._pending) < READ_COUNT:
                self._read(connection)
            self._drain()

        answer.addCallbacks(got, self._readFailed)

    def _drain(self) -> None:
        """
        Deliver the entries received, about L{SLICE_RECORDS} records a
        reactor turn: subscribers' connections are written between slices,
        so a big read does not overflow their queues.
        """
        self._drainCall = None
        pending = self._pending
        delivered = 0
        while pending and delivered < SLICE_RECORDS and self.joined:
            ident, fields = pending.popleft()
            try:
                delivered += self._deliverEntry(_fields(fields))
            except (EntryError, KeyError, ValueError):
                self.log.failure(
                    "Cluster {address}: entry {ident} is not of logio; skipped",
                    address=self.address.describe(),
                    ident=ident,
                )
            self._lastId = ident
        if pending and self.joined:
            if self._drainCall is None:
                self._drainCall = self._reactor.callLater(0, self._drain)
        else:
            self._read(self._readConnection)

    def _deliverEntry(self, entry: dict[bytes, bytes]) -> int:
        """
        Deliver an entry read from the stream, or pass on its note.

        @return: How many records were delivered.
        """
        origin = entry.get(b"o", b"")
        mine = origin == self.node.encode()
        if b"g" in entry:
            if not mine:
                for app, proc, host, count, number in json.loads(entry[b"g"]):
                    # Not if the entry reached this node after all.
                    if (origin, number) not in self._recent:
                        self._broker.unrelayed(Topic(app, proc, host), int(count))
            return 0
        first = int(entry[b"s"])
        count = int(entry[b"n"])
        if self._expected is not None and first > self._expected:
            self.missed += first - self._expected
            self._broker.unrelayed(None, first - self._expected)
        self._expected = max(self._expected or 0, first + count)
        self._clusterNext = max(self._clusterNext, first + count)
        batches: Optional[Iterable[tuple[Topic, list[Record], int]]] = None
        if mine:
            number = int(entry[b"b"])
            if number in self._alone:
                # Delivered here alone already: it reached the stream after all.
                self._alone.discard(number)
                return 0
            # This node's own records are still in memory: no need to
            # decode them again.
            batches = self._cameBack(number)
        recent = self._recent
        recent[origin, int(entry[b"b"])] = None
        if len(recent) > RECENT_ENTRIES:
            del recent[next(iter(recent))]
        size = len(entry[b"d"])
        self.bytesIn += size
        if batches is None:
            batches = decodeBatches(entry[b"d"])
        for topic, records, batchSize in batches:
            self._broker.deliver(topic, records, first, batchSize)
            self.relayedIn += len(records)
            first += len(records)
        return count

    def _readFailed(self, reason: Failure) -> None:
        """
        A read failed: its connection was lost (reading starts again when
        it is back), or Redis refused it.
        """
        self._reading = self._loading = False
        if not reason.check(RedisError):
            return
        self.log.error(
            "Cluster {address}: cannot read the stream: {reason}",
            address=self.address.describe(),
            reason=reason.getErrorMessage(),
        )


def _fields(fields: list[bytes]) -> dict[bytes, bytes]:
    """
    A stream entry's fields, by name.
    """
    return dict(zip(fields[::2], fields[1::2], strict=True))
