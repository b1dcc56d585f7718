"""
Tests for the output of streams over plain sockets: what a turn of the
reactor's loop wrote goes out when it ends, in one system call per
subscriber (L{logio.web.stream.Flusher}).
"""

from __future__ import annotations

import socket
import weakref
from types import SimpleNamespace
from typing import Callable

from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Connection
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from logio.filters import Filters
from logio.interfaces import Segment
from logio.net import bufferedBytes
from logio.stats import Stats
from logio.web import output
from logio.web.output import PUMP_INTERVAL, SEND_AT_ONCE
from logio.web.stream import QueueBudget, Stream
from tests.support.fakes import TEXT
from tests.support.sockets import readAvailable


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class FlushTests(SynchronousTestCase):
    """
    A stream over a plain socket sends what a turn of the loop wrote when
    the turn ends, straight to the kernel, in order with anything else.
    """

    def setUp(self) -> None:
        near, self.far = socket.socketpair()
        self.addCleanup(near.close)
        self.addCleanup(self.far.close)
        self.far.setblocking(False)
        self.reactor = MemoryReactorClock()
        self.transport = Connection(near, Protocol(), reactor=self.reactor)
        self.transport.connected = 1
        self.stream = self.makeStream(1 << 20)

    def makeStream(self, maxBytes: int) -> Stream:
        """
        A stream over the socket, bounded at C{maxBytes}.
        """
        request = SimpleNamespace(chunked=True, channel=SimpleNamespace(transport=self.transport))
        stream = Stream(
            request,  # type: ignore[arg-type]
            Filters(),
            TEXT,
            self.reactor,
            1000,
            maxBytes,
            Stats(),
            QueueBudget(1 << 30),
            self.transport,
        )
        stream.startStreaming()
        return stream

    def received(self) -> bytes:
        """
        What the far end can read now.
        """
        return readAvailable(self.far)

    def test_sentWhenTheTurnEnds(self) -> None:
        """
        Batches delivered in one turn go out together when it ends, without
        the reactor watching the socket for writing.
        """
        self.stream.deliver(Segment(b"one\n", 1, b"\n"))
        self.stream.deliver(Segment(b"two\n", 1, b"\n"))
        self.assertEqual(self.received(), b"")
        self.reactor.advance(0)
        self.assertEqual(self.received(), chunk(b"one\n") + chunk(b"two\n"))
        self.assertEqual(self.reactor.getWriters(), [])

    def test_loopsOwnTurnEnd(self) -> None:
        """
        On a loop that runs calls when a turn ends (C{callAtTurnEnd}, as
        L{logio.server.loop.LeanEPollReactor} does), the turn's output goes
        out then, asked for once a turn, with no timed call.
        """
        atTurnEnd: list[Callable[[], object]] = []
        self.reactor = MemoryReactorClock()
        self.reactor.callAtTurnEnd = atTurnEnd.append  # type: ignore[attr-defined]
        self.transport.reactor = self.reactor
        self.stream = self.makeStream(1 << 20)
        self.stream.deliver(Segment(b"one\n", 1, b"\n"))
        self.stream.deliver(Segment(b"two\n", 1, b"\n"))
        self.assertEqual(len(atTurnEnd), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.received(), b"")
        atTurnEnd.pop()()
        self.assertEqual(self.received(), chunk(b"one\n") + chunk(b"two\n"))
        self.stream.deliver(Segment(b"three\n", 1, b"\n"))
        self.assertEqual(len(atTurnEnd), 1)

    def test_largerThroughTheTransport(self) -> None:
        """
        More than L{SEND_AT_ONCE} goes to the transport at once, behind what
        waited, so the subscriber reads everything in order.
        """
        big = b"x" * SEND_AT_ONCE + b"\n"
        self.stream.deliver(Segment(b"first\n", 1, b"\n"))
        self.stream.deliver(Segment(big, 1, b"\n"))
        self.assertEqual(bufferedBytes(self.transport), len(chunk(b"first\n") + chunk(big)))
        self.stream.deliver(Segment(b"after\n", 1, b"\n"))
        self.reactor.advance(0)
        while bufferedBytes(self.transport):
            self.transport.doWrite()
        self.assertEqual(self.received(), chunk(b"first\n") + chunk(big) + chunk(b"after\n"))

    def test_sameSegmentToMany(self) -> None:
        """
        Subscribers given the same segments (one group's) each get them
        whole and in order, small and large, though each segment's chunk
        is made once: a later segment of the same size is its own chunk.
        """
        near, far = socket.socketpair()
        self.addCleanup(near.close)
        self.addCleanup(far.close)
        far.setblocking(False)
        second = Connection(near, Protocol(), reactor=self.reactor)
        second.connected = 1
        first, firstStream = self.transport, self.stream
        self.transport = second
        secondStream = self.makeStream(1 << 20)
        big = b"b" * SEND_AT_ONCE + b"\n"
        segments = [b"one\n", b"two\n", big, b"end\n"]
        for data in segments:
            for stream in (firstStream, secondStream):
                stream.deliver(Segment(data, 1, b"\n"))
        self.reactor.advance(0)
        for transport in (first, second):
            while bufferedBytes(transport):
                transport.doWrite()
        expected = b"".join(map(chunk, segments))
        self.assertEqual(self.received(), expected)
        self.assertEqual(readAvailable(far), expected)

    def test_waitingCountsInTheBound(self) -> None:
        """
        What waits for the end of the turn counts in what the subscriber
        holds: paused, it queues only what fits beside it.
        """
        stream = self.makeStream(2000)
        stream.deliver(Segment(b"w" * 999 + b"\n", 1, b"\n"))
        stream.pauseProducing()
        for i in range(5):
            stream.deliver(Segment(b"%d" % i + b"q" * 398 + b"\n", 1, b"\n"))
        self.assertEqual(stream.queued, (2, 800))
        self.assertEqual(stream.droppedTotal, 3)

    def test_freedWhenReleased(self) -> None:
        """
        A released stream is freed at once, with its transport: nothing it
        holds refers back to it (a cycle would keep a stalled transport's
        buffer until the cyclic collector ran).
        """
        self.stream.deliver(Segment(b"one\n", 1, b"\n"))
        ref = weakref.ref(self.stream)
        self.stream.release()
        del self.stream
        self.assertIsNone(ref())
        self.reactor.advance(0)
        self.assertEqual(self.received(), b"")

    def test_pumpedInALongTurn(self) -> None:
        """
        What the transport holds is sent within a turn of the loop that has
        gone on for L{PUMP_INTERVAL} (a long turn of many publishers'
        reads), not only when the turn ends; not in a shorter one.
        """
        now = [100.0]
        self.patch(output, "monotonic", lambda: now[0])
        stream = self.makeStream(1 << 20)
        big = b"z" * SEND_AT_ONCE + b"\n"
        stream.deliver(Segment(big, 1, b"\n"))
        # The next turn of the loop begins: it is timed from here.
        self.reactor.advance(0)
        self.assertEqual(self.received(), b"")
        now[0] += PUMP_INTERVAL / 2
        stream.deliver(Segment(big, 1, b"\n"))
        self.assertEqual(self.received(), b"")
        now[0] += PUMP_INTERVAL
        stream.deliver(Segment(b"last\n", 1, b"\n"))
        stream.deliver(Segment(big, 1, b"\n"))
        received = self.received()
        self.assertEqual(
            received, (chunk(big) * 2 + chunk(b"last\n") + chunk(big))[: len(received)]
        )
        self.assertGreater(len(received), 0)
        while bufferedBytes(self.transport):
            self.transport.doWrite()
            received += self.received()
        self.assertEqual(received, chunk(big) * 2 + chunk(b"last\n") + chunk(big))
