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
  - C{logio:records}: the stream.  One entry per read of a publisher,
    its id C{<its first sequence number>-0}: C{s} its first sequence
    number, C{o} the node, C{b} the node's number for it, C{n} its record
    count, C{d} its batches (L{logio.cluster.entries}).

A script numbers an entry and appends it at once, so the stream's order
is the order of the numbers.  A node delivers its own publishers' records
when it reads them back, like every other node's: the same records, in the
same order, with the same ids, on every node.

When Redis cannot be reached, or has not given back what a node sent
within L{STALL_SECONDS}, or more than C{--cluster-buffer-bytes} of it, the
node goes on alone: what its publishers send (and what it sent that did
not come back) reaches its own subscribers, numbered in an epoch of the
node's own (so no id of it is mistaken for one of the cluster's), and is
not relayed.  Back in the cluster, the node forgets the records it held
(the two epochs are never held together), reads on from where it stopped,
and appends a note (C{g}: its topics and counts) of what it could not
relay, which every other node passes on to its subscribers of those topics
as a notice.  A node that finds numbers missing in the stream (a Redis that
lost its data, or trimmed entries before they were read) tells its
subscribers how many.  A Redis that lost its data (its C{logio:id} gone)
gets a new id: ids from before are of an earlier run.
"""

from __future__ import annotations

import json
import os
import socket
from collections import deque
from typing import Any, Callable, Optional

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from logio.cluster.address import RedisAddress
from logio.cluster.client import RedisService
from logio.cluster.entries import encodeBatches
from logio.cluster.protocol import RedisError, RedisProtocol
from logio.cluster.reading import StreamReading
from logio.cluster.scripts import APPEND, IDENT, JOIN, NOTE, SEQ, STREAM
from logio.history import History
from logio.interfaces import IBroker, IRelay
from logio.topic import Record, Topic

#: Entries the stream keeps, about: Redis trims the oldest beyond.
STREAM_ENTRIES = 100_000
#: Seconds what a node sent may take to come back from the stream before
#: the node goes on alone.
STALL_SECONDS = 2.0
#: Seconds between two looks for what did not come back.
CHECK_INTERVAL = 0.25
#: Bytes sent and not back yet beyond which the publishers are not read
#: (TCP holds them back) until half of it is back: a Redis that keeps up
#: slower than they publish slows them down; one that stalls is left.
HOLD_BYTES = 2 * 1024 * 1024
#: Bytes sent and not back yet at most, by default.
BUFFER_BYTES = 64 * 1024 * 1024

_Batches = list[tuple[Topic, list[Record]]]


def nodeName() -> str:
    """
    A name for this node that no other node has: its host and process.
    """
    return f"{socket.gethostname()}:{os.getpid()}"


@implementer(IRelay)
class Relay(StreamReading, MultiService):
    """
    The link: see the module docstring.

    @ivar joined: Whether the node is in the cluster (its records are
        relayed), rather than alone.
    @ivar relayedOut: Records this node appended to the stream.
    @ivar relayedIn: Records read from the stream and delivered here.
    @ivar unrelayed: Records published here and delivered here alone.
    @ivar missed: Records numbered in the stream that this node never got.
    """

    log = Logger()

    def __init__(
        self,
        address: RedisAddress,
        broker: IBroker,
        history: History,
        reactor: IReactorTime,
        bufferBytes: int = BUFFER_BYTES,
        node: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.address = address
        self.node = nodeName() if node is None else node
        self.bufferBytes = bufferBytes
        self._broker = broker
        self._history = history
        self._reactor = reactor
        RedisService(
            address, reactor, connected=self._writerUp, lost=self._writerLost, failed=self._failed
        ).setServiceParent(self)
        RedisService(
            address, reactor, connected=self._readerUp, lost=self._readerLost, failed=self._failed
        ).setServiceParent(self)
        self._checker = LoopingCall(self._check)
        self._checker.clock = reactor
        self.joined = False
        self._joining = False
        #: Called with True to stop reading the publishers, False to go
        #: on (the publishers' factory sets it).
        self.hold: Callable[[bool], object] = lambda held: None
        self._holding = False
        #: Why the node is alone, if it is.
        self.why = "not connected yet"
        #: The cluster's id, once joined.
        self._clusterId: Optional[int] = None
        #: The number after the last the cluster gave that this node saw.
        self._clusterNext = 1
        self._connection: Optional[RedisProtocol] = None
        self._readConnection: Optional[RedisProtocol] = None
        self._entries = 0
        #: Entries sent that have not come back from the stream, by their
        #: number: their batches, bytes and when they were sent.
        self._sent: dict[int, tuple[_Batches, int, float]] = {}
        self._sentBytes = 0
        #: Numbers of entries delivered here alone, in case they reached
        #: the stream after all.
        self._alone: set[int] = set()
        #: What was delivered here alone and not reported to the cluster
        #: yet: records by topic and the number of the entry they were sent
        #: in (L{None} if never sent).
        self._unreported: dict[tuple[Topic, Optional[int]], int] = {}
        #: The entries read lately, by node and number: a note of
        #: records another node could not relay leaves out those this
        #: node got after all.
        self._recent: dict[tuple[bytes, int], None] = {}
        #: The id of the last entry read; None before history is loaded.
        self._lastId: Optional[bytes] = None
        #: The id of the last entry received (delivered or not).
        self._readId: Optional[bytes] = None
        #: Entries received, to deliver a slice a reactor turn.
        self._pending: deque[Any] = deque()
        self._drainCall: Optional[IDelayedCall] = None
        #: Which start of reading a read belongs to.
        self._generation = 0
        self._loading = False
        #: The number the next entry of the stream should start at.
        self._expected: Optional[int] = None
        self._reading = False
        self._outageLogged = False
        self.relayedOut = 0
        self.relayedIn = 0
        self.bytesOut = 0
        self.bytesIn = 0
        self.unrelayed = 0
        self.missed = 0

    def startService(self) -> None:
        super().startService()
        self._checker.start(CHECK_INTERVAL, now=False)

    def stopService(self) -> Deferred[None]:
        if self._checker.running:
            self._checker.stop()
        self.joined = False
        self._release()
        return super().stopService()

    @property
    def connection(self) -> Optional[RedisProtocol]:
        """
        The connection commands that do not block go through, while joined.
        """
        return self._connection if self.joined else None

    # Sending.

    def send(self, topic: Topic, records: list[Record], size: int) -> bool:
        if not self.joined:
            self._deliveredAlone(topic, len(records), None)
            return False
        self._append([(topic, records)])
        return True

    def _append(self, batches: _Batches) -> None:
        """
        Send batches as one entry, at once: waiting for the end of the
        reactor's turn to send more in one entry took a turn's latency, and
        a read's batches are one entry's worth already.
        """
        connection = self._connection
        assert connection is not None
        self._entries += 1
        number = self._entries
        count = sum(len(records) for _, records in batches)
        data = encodeBatches(batches)
        self._sent[number] = (batches, len(data), self._reactor.seconds())
        self._sentBytes += len(data)
        answer = connection.execute(
            "EVAL",
            APPEND,
            3,
            IDENT,
            SEQ,
            STREAM,
            self._broker.start,
            count,
            STREAM_ENTRIES,
            self.node,
            number,
            data,
        )
        answer.addCallbacks(
            self._appended,
            self._notAppended,
            callbackArgs=(count, len(data)),
            errbackArgs=(number,),
        )
        if self._sentBytes > self.bufferBytes:
            self._leave(f"more than {self.bufferBytes} bytes sent have not come back")
        elif self._sentBytes > HOLD_BYTES and not self._holding:
            self._holding = True
            self.hold(True)

    def _release(self) -> None:
        """
        Read the publishers again.
        """
        if self._holding:
            self._holding = False
            self.hold(False)

    def _cameBack(self, number: int) -> Optional[list[tuple[Topic, list[Record], int]]]:
        sent = self._sent.pop(number, None)
        if sent is None:
            return None
        batches, size, _ = sent
        self._sentBytes -= size
        if self._sentBytes < HOLD_BYTES // 2:
            self._release()
        # The bytes each batch took, about: the entry's, shared by records.
        share = size // max(sum(len(records) for _, records in batches), 1)
        return [(topic, records, share * len(records)) for topic, records in batches]

    def _appended(self, first: object, count: int, size: int) -> None:
        self.relayedOut += count
        self.bytesOut += size

    def _notAppended(self, reason: Failure, number: int) -> None:
        """
        An entry was not appended (the answer lost with the connection, or
        refused): the node goes on alone.
        """
        if reason.check(RedisError) and "LOGIO-EPOCH" in str(reason.value):
            self._leave("its data is gone")
            if self._connection is not None:
                self._join(self._connection)
        elif number in self._sent:
            self._leave(reason.getErrorMessage())

    def _deliverAlone(self, batches: _Batches, number: Optional[int] = None) -> None:
        """
        Deliver batches published here to this node's subscribers only,
        numbered here.

        @param number: The number of the entry they were sent in, if they
            were.
        """
        for topic, records in batches:
            self._deliveredAlone(topic, len(records), number)
            self._broker.deliver(topic, records, self._history.next, 0)

    def _deliveredAlone(self, topic: Topic, count: int, number: Optional[int]) -> None:
        self.unrelayed += count
        key = (topic, number)
        self._unreported[key] = self._unreported.get(key, 0) + count

    def _check(self) -> None:
        """
        Go on alone if what was sent first has not come back in time;
        alone, try to join again (answered once Redis answers again).
        """
        if self.joined:
            if self._sent:
                sent = next(iter(self._sent.values()))[2]
                if self._reactor.seconds() - sent > STALL_SECONDS:
                    self._leave(f"what was sent did not come back within {STALL_SECONDS:g} s")
        elif self._connection is not None and self._readConnection is not None:
            self._join(self._connection)

    # Joining and leaving.

    def _writerUp(self, connection: RedisProtocol) -> None:
        self._connection = connection
        if self._readConnection is not None:
            self._join(connection)

    def _readerUp(self, connection: RedisProtocol) -> None:
        self._readConnection = connection
        if self._connection is not None:
            self._join(self._connection)

    def _join(self, connection: RedisProtocol) -> None:
        """
        Join the cluster: learn its id, make sure its numbering goes on
        after what this node saw of it.
        """
        if self._joining or self.joined:
            return
        self._joining = True
        candidate = int(self._reactor.seconds() * 1000)
        answer = connection.execute("EVAL", JOIN, 2, IDENT, SEQ, candidate, self._clusterNext - 1)
        answer.addCallbacks(self._joinedAs, self._joinFailed)

    def _joinFailed(self, reason: Failure) -> None:
        self._joining = False
        self._failed(reason)

    def _joinedAs(self, reply: Any) -> None:
        self._joining = False
        if self.joined or self._connection is None or self._readConnection is None:
            return
        ident = int(reply[0])
        if self._clusterId is not None and ident != self._clusterId:
            # A new stream: read it from its start.
            self._lastId = b"0-0"
            self.log.warn(
                "Cluster {address}: its data is gone (a new cluster id, {ident}); ids from "
                "before are of an earlier run",
                address=self.address.describe(),
                ident=ident,
            )
        self._clusterId = ident
        # The records held are of another epoch.
        self._history.clear()
        self._history.next = self._clusterNext
        self._broker.changeEpoch(ident)
        self.joined = True
        self.why = ""
        self.log.info(
            "Cluster {address}: joined as {node}, ids {ident}-…; {unrelayed} records published "
            "here so far were not relayed",
            address=self.address.describe(),
            node=self.node,
            ident=ident,
            unrelayed=self.unrelayed,
        )
        self._outageLogged = False
        self._report(self._connection)
        self._startReading()

    def _report(self, connection: RedisProtocol) -> None:
        """
        Tell the other nodes what was delivered here alone.
        """
        if not self._unreported:
            return
        note = json.dumps(
            [
                [topic.app, topic.proc, topic.host, count, number]
                for (topic, number), count in self._unreported.items()
            ]
        )
        self._unreported = {}
        connection.execute(
            "EVAL", NOTE, 2, SEQ, STREAM, STREAM_ENTRIES, self.node, note
        ).addErrback(lambda reason: None)

    def _leave(self, why: str) -> None:
        """
        Go on alone, in an epoch of this node's own; deliver here what was
        sent and has not come back.
        """
        if not self.joined:
            return
        self.joined = False
        self.why = why
        self._release()
        # Read again from the last entry delivered, once back.
        self._generation += 1
        self._pending.clear()
        if not self._outageLogged:
            self._outageLogged = True
            self.log.warn(
                "Cluster {address}: going on alone ({why}); trying again",
                address=self.address.describe(),
                why=why,
            )
        self._clusterNext = self._history.next
        self._history.clear()
        self._broker.changeEpoch(int(self._reactor.seconds() * 1000))
        sent, self._sent = self._sent, {}
        self._sentBytes = 0
        for number, (batches, _, _) in sent.items():
            self._alone.add(number)
            self._deliverAlone(batches, number)

    def _writerLost(self, reason: Failure) -> None:
        self._connection = None
        self._leave(f"lost: {reason.getErrorMessage()}")

    def _readerLost(self, reason: Failure) -> None:
        self._readConnection = None
        self._reading = False
        self._leave(f"lost: {reason.getErrorMessage()}")

    def _failed(self, reason: Failure) -> None:
        if not self._outageLogged:
            self._outageLogged = True
            self.log.warn(
                "Cluster {address}: cannot reach it ({reason}); going on alone, trying again",
                address=self.address.describe(),
                reason=reason.getErrorMessage(),
            )
        self.why = f"cannot reach it: {reason.getErrorMessage()}"

    # What the node reports.

    def state(self) -> str:
        """
        The link's state, for C{/healthz}: C{joined}, or C{alone} and why.
        """
        return "joined" if self.joined else f"alone ({self.why})"

    def metrics(self) -> list[tuple[str, str, str, float]]:
        """
        What the link adds to C{/metrics}.
        """
        lag = 0.0
        if self._sent:
            lag = self._reactor.seconds() - next(iter(self._sent.values()))[2]
        return [
            ("gauge", "logio_cluster_joined", "1 while the node is in its cluster, 0 alone.", float(self.joined)),
            ("gauge", "logio_cluster_lag_seconds", "How long the oldest record sent has waited to come back.", lag),
            ("counter", "logio_cluster_records_out", "Records this node relayed to the cluster.", self.relayedOut),
            ("counter", "logio_cluster_records_in", "Records read from the cluster and delivered here.", self.relayedIn),
            ("counter", "logio_cluster_bytes_out", "Bytes of records relayed to the cluster.", self.bytesOut),
            ("counter", "logio_cluster_bytes_in", "Bytes of records read from the cluster.", self.bytesIn),
            ("counter", "logio_cluster_records_unrelayed", "Records published here and delivered here alone.", self.unrelayed),
            ("counter", "logio_cluster_records_missed", "Records of the cluster this node never got.", self.missed),
        ]  # fmt: skip
