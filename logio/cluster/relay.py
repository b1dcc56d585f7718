# -*- test-case-name: tests.test_e2e_cluster -*-
"""
A cluster node's link to the others (C{--cluster redis://…}): every node
appends what its publishers send to one Redis stream, and reads the stream
back, so that each record reaches every node's subscribers once, numbered
the same everywhere.

Keys, in the database the URL names:
  - C{logio:id}: the cluster's id, the instant it was made in
    milliseconds: the first part of every event id (C{<id>-<seq>}).
  - C{logio:seq}: the last sequence number given.
  - C{logio:records}: the stream.  One entry per node per reactor turn
    with records: C{s} its first sequence number, C{o} the node, C{b} the
    node's number for it, C{n} its record count, C{d} its batches
    (L{logio.cluster.entries}).

A script numbers an entry and appends it at once, so the stream's order
is the order of the numbers.  A node delivers its own publishers' records
when it reads them back, like every other node's: the same records, in the
same order, with the same ids, on every node.

When Redis cannot be reached, a node goes on alone: what its publishers
send reaches its own subscribers, numbered in an epoch of the node's own
(so no id of it is mistaken for one of the cluster's), and is not relayed.
Back in the cluster, the node forgets the records it held (the two epochs
are never held together) and reads on from where it stopped.  A Redis that
lost its data (its C{logio:id} gone) gets a new id: ids from before are of
an earlier run.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Optional

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from logio.cluster.address import RedisAddress
from logio.cluster.client import RedisService
from logio.cluster.entries import EntryError, decodeBatches, encodeBatches
from logio.cluster.protocol import RedisError, RedisProtocol
from logio.history import History
from logio.interfaces import IBroker, IRelay
from logio.topic import Record, Topic

IDENT = "logio:id"
SEQ = "logio:seq"
STREAM = "logio:records"
#: Entries the stream keeps, about: Redis trims the oldest beyond.
STREAM_ENTRIES = 100_000
#: How long one read of the stream waits for entries, in milliseconds.
BLOCK_MS = 1000
#: Entries one read takes at most.
READ_COUNT = 500
#: Entries one read of the stream's end takes, loading history.
LOAD_COUNT = 100

# Make the cluster's id unless there is one, and make the numbering go on
# after what this node has numbered: the id, and the last number given.
_JOIN = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last < tonumber(ARGV[2]) then
    last = tonumber(ARGV[2])
    redis.call('SET', KEYS[2], last)
end
return {redis.call('GET', KEYS[1]), last}
"""

# Number an entry and append it, if the cluster is still the one the node
# joined: the first number.
_APPEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return redis.error_reply('LOGIO-EPOCH the cluster id changed')
end
local count = tonumber(ARGV[2])
local last = redis.call('INCRBY', KEYS[2], count)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
    's', last - count + 1, 'n', count, 'o', ARGV[4], 'b', ARGV[5], 'd', ARGV[6])
return last - count + 1
"""


def nodeName() -> str:
    """
    A name for this node that no other node has: its host and process.
    """
    return f"{socket.gethostname()}:{os.getpid()}"


@implementer(IRelay)
class Relay(MultiService):
    """
    The link: see the module docstring.

    @ivar joined: Whether the node is in the cluster (its records are
        relayed), rather than alone.
    @ivar relayedOut: Records this node appended to the stream.
    @ivar relayedIn: Records read from the stream and delivered here.
    @ivar unrelayed: Records published here that were not relayed: they
        came while the node was alone.
    """

    log = Logger()

    def __init__(
        self,
        address: RedisAddress,
        broker: IBroker,
        history: History,
        reactor: IReactorTime,
        node: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.address = address
        self.node = nodeName() if node is None else node
        self._broker = broker
        self._history = history
        self._reactor = reactor
        self._writer = RedisService(
            address, reactor, connected=self._writerUp, lost=self._writerLost, failed=self._failed
        )
        self._writer.setServiceParent(self)
        self._reader = RedisService(
            address, reactor, connected=self._readerUp, lost=self._readerLost, failed=self._failed
        )
        self._reader.setServiceParent(self)
        self.joined = False
        self._joining = False
        #: The cluster's id, once joined.
        self._clusterId: Optional[int] = None
        self._connection: Optional[RedisProtocol] = None
        self._readConnection: Optional[RedisProtocol] = None
        #: Batches published this turn, to send at its end.
        self._outgoing: list[tuple[Topic, list[Record]]] = []
        self._flushCall: Optional[IDelayedCall] = None
        self._entries = 0
        #: Entries sent and not answered yet, by their number.
        self._sent: dict[int, list[tuple[Topic, list[Record]]]] = {}
        #: Numbers of entries delivered here alone, in case they reached
        #: the stream after all.
        self._alone: set[int] = set()
        #: The id of the last entry read; None before history is loaded.
        self._lastId: Optional[bytes] = None
        self._reading = False
        self._outageLogged = False
        self.relayedOut = 0
        self.relayedIn = 0
        self.unrelayed = 0

    # IRelay

    def send(self, topic: Topic, records: list[Record], size: int) -> bool:
        if not self.joined:
            self.unrelayed += len(records)
            return False
        self._outgoing.append((topic, records))
        if self._flushCall is None:
            self._flushCall = self._reactor.callLater(0, self._flush)
        return True

    def _flush(self) -> None:
        """
        Send the batches of this turn as one entry.
        """
        self._flushCall = None
        batches, self._outgoing = self._outgoing, []
        connection = self._connection
        if not batches:
            return
        if connection is None or not self.joined:
            self._deliverAlone(batches)
            return
        self._entries += 1
        number = self._entries
        count = sum(len(records) for _, records in batches)
        self._sent[number] = batches
        answer = connection.execute(
            "EVAL",
            _APPEND,
            3,
            IDENT,
            SEQ,
            STREAM,
            self._broker.start,
            count,
            STREAM_ENTRIES,
            self.node,
            number,
            encodeBatches(batches),
        )
        answer.addCallbacks(
            self._appended, self._notAppended, callbackArgs=(number, count), errbackArgs=(number,)
        )

    def _appended(self, first: object, number: int, count: int) -> None:
        self._sent.pop(number, None)
        self.relayedOut += count

    def _notAppended(self, reason: Failure, number: int) -> None:
        """
        An entry was not appended, or the answer was lost with the
        connection: deliver its records here alone, and skip it if it
        reached the stream after all.
        """
        batches = self._sent.pop(number, None)
        if batches is None:
            return
        self._alone.add(number)
        self.unrelayed += sum(len(records) for _, records in batches)
        self._leave()
        self._deliverAlone(batches)
        if reason.check(RedisError) and "LOGIO-EPOCH" in str(reason.value):
            # Redis lost its data: join it anew.
            if self._connection is not None:
                self._join(self._connection)

    def _deliverAlone(self, batches: list[tuple[Topic, list[Record]]]) -> None:
        """
        Deliver batches published here to this node's subscribers only,
        numbered here.
        """
        for topic, records in batches:
            self._broker.deliver(topic, records, self._history.next, 0)

    # Joining and leaving.

    def _writerUp(self, connection: RedisProtocol) -> None:
        self._connection = connection
        if self._readConnection is not None:
            self._join(connection)

    def _join(self, connection: RedisProtocol) -> None:
        """
        Join the cluster: learn its id, make sure its numbering goes on
        after this node's.
        """
        if self._joining:
            return
        self._joining = True
        candidate = int(self._reactor.seconds() * 1000)
        answer = connection.execute("EVAL", _JOIN, 2, IDENT, SEQ, candidate, self._history.next - 1)
        answer.addCallbacks(self._joinedAs, self._joinFailed)

    def _joinFailed(self, reason: Failure) -> None:
        self._joining = False
        self._failed(reason)

    def _joinedAs(self, reply: Any) -> None:
        self._joining = False
        ident, last = int(reply[0]), int(reply[1])
        if self._clusterId is not None and ident != self._clusterId:
            # Redis lost its data: its stream is a new one, read from its
            # start; ids from before are of an earlier run.
            self._lastId = b"0-0"
            self.log.warn(
                "Cluster {address}: its data is gone (a new cluster id, {ident}); ids from "
                "before are of an earlier run",
                address=self.address.describe(),
                ident=ident,
            )
        self._clusterId = ident
        if ident != self._broker.start:
            # The records held are of another epoch.
            self._history.clear()
            self._broker.changeEpoch(ident)
        self.joined = True
        if self._outageLogged:
            self._outageLogged = False
            self.log.info(
                "Cluster {address}: back; {unrelayed} records published here so far were not "
                "relayed",
                address=self.address.describe(),
                unrelayed=self.unrelayed,
            )
        else:
            self.log.info(
                "Cluster {address}: joined as {node}, ids {ident}-… from {next}",
                address=self.address.describe(),
                node=self.node,
                ident=ident,
                next=last + 1,
            )
        self._startReading()

    def _leave(self) -> None:
        """
        Go on alone, in an epoch of this node's own.
        """
        if not self.joined:
            return
        self.joined = False
        self._history.clear()
        self._broker.changeEpoch(int(self._reactor.seconds() * 1000))

    def _writerLost(self, reason: Failure) -> None:
        self._connection = None
        self._down(reason)

    def _readerLost(self, reason: Failure) -> None:
        self._readConnection = None
        self._reading = False
        self._down(reason)

    def _down(self, reason: Failure) -> None:
        """
        A connection to Redis was lost: say so once, go on alone until
        both are back.
        """
        if not self._outageLogged:
            self._outageLogged = True
            self.log.warn(
                "Cluster {address}: lost ({reason}); going on alone, reconnecting",
                address=self.address.describe(),
                reason=reason.getErrorMessage(),
            )
        self._leave()
        if self._connection is not None and self._readConnection is not None:
            self._join(self._connection)

    def _failed(self, reason: Failure) -> None:
        if not self._outageLogged:
            self._outageLogged = True
            self.log.warn(
                "Cluster {address}: cannot reach it ({reason}); going on alone, retrying",
                address=self.address.describe(),
                reason=reason.getErrorMessage(),
            )

    # Reading the stream.

    def _readerUp(self, connection: RedisProtocol) -> None:
        self._readConnection = connection
        if self._connection is not None and not self.joined:
            self._join(self._connection)
        self._startReading()

    def _startReading(self) -> None:
        """
        Read once joined and the reader is connected: first, the first
        time, the stream's newest records into history.
        """
        connection = self._readConnection
        if self._reading or connection is None or not self.joined:
            return
        self._reading = True
        if self._lastId is None:
            self._load(connection, [], b"+")
        else:
            self._read(connection)

    def _load(self, connection: RedisProtocol, entries: list[Any], end: bytes) -> None:
        """
        Read the stream's newest entries, newest first, until history is
        full or the stream read whole; then hold them, oldest first.
        """
        held = sum(_count(entry) for entry in entries)
        if entries and held >= self._history.maxRecords:
            self._loaded(connection, entries)
            return
        answer = connection.execute("XREVRANGE", STREAM, end, "-", "COUNT", LOAD_COUNT)

        def page(reply: Any) -> None:
            if not reply:
                self._loaded(connection, entries)
                return
            entries.extend(reply)
            self._load(connection, entries, b"(" + reply[-1][0])

        answer.addCallbacks(page, self._readFailed)

    def _loaded(self, connection: RedisProtocol, entries: list[Any]) -> None:
        history = self._history
        for _, fields in reversed(entries):
            entry = _fields(fields)
            first = int(entry[b"s"])
            for topic, records, size in _batches(entry):
                owner = history.holder(topic, len(records), records[-1][0])
                history.next = first
                history.add(owner, records, size)
                first += len(records)
        self._lastId = entries[0][0] if entries else b"0-0"
        self._read(connection)

    def _read(self, connection: RedisProtocol) -> None:
        """
        Wait for entries after the last one read, and deliver them.
        """
        assert self._lastId is not None
        answer = connection.execute(
            "XREAD", "COUNT", READ_COUNT, "BLOCK", BLOCK_MS, "STREAMS", STREAM, self._lastId
        )

        def got(reply: Any) -> None:
            if reply:
                for ident, fields in reply[0][1]:
                    try:
                        self._deliverEntry(fields)
                    except (EntryError, KeyError, ValueError):
                        self.log.failure(
                            "Cluster {address}: entry {ident} is not of logio; skipped",
                            address=self.address.describe(),
                            ident=ident,
                        )
                    self._lastId = ident
            if self._readConnection is connection and self.joined:
                self._read(connection)
            else:
                self._reading = False

        answer.addCallbacks(got, self._readFailed)

    def _deliverEntry(self, fields: list[bytes]) -> None:
        entry = _fields(fields)
        if entry.get(b"o") == self.node.encode() and int(entry.get(b"b", 0)) in self._alone:
            # Delivered here alone already: it reached the stream after all.
            self._alone.discard(int(entry[b"b"]))
            return
        first = int(entry[b"s"])
        for topic, records, size in _batches(entry):
            self._broker.deliver(topic, records, first, size)
            self.relayedIn += len(records)
            first += len(records)

    def _readFailed(self, reason: Failure) -> None:
        """
        A read failed: its connection was lost (reading starts again when
        it is back), or Redis refused it.
        """
        self._reading = False
        if not reason.check(RedisError):
            return
        self.log.error(
            "Cluster {address}: cannot read the stream: {reason}",
            address=self.address.describe(),
            reason=reason.getErrorMessage(),
        )

    def stopService(self) -> Deferred[None]:
        if self._flushCall is not None:
            self._flushCall.cancel()
            self._flushCall = None
        self.joined = False
        return super().stopService()


def _fields(fields: list[bytes]) -> dict[bytes, bytes]:
    """
    A stream entry's fields, by name.
    """
    return dict(zip(fields[::2], fields[1::2], strict=True))


def _count(entry: Any) -> int:
    """
    How many records a stream entry holds.
    """
    return int(_fields(entry[1]).get(b"n", 0))


def _batches(entry: dict[bytes, bytes]) -> list[tuple[Topic, list[Record], int]]:
    return list(decodeBatches(entry.get(b"d", b"")))
