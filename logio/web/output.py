# -*- test-case-name: tests.test_flush -*-
"""
How a subscriber's output reaches its socket: as the chunks of a chunked
HTTP response, and, over a plain socket, what a turn of the reactor's loop
wrote sent when the turn ends, in one system call for each subscriber.
"""

from __future__ import annotations

from time import monotonic
from typing import Callable, Optional
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.internet.tcp import Connection
from twisted.logger import Logger

from logio.net import bufferedBytes, sendNow

#: The most output a stream holds to send straight to its socket at the end
#: of a turn of the loop (see L{Flusher}); more goes through its transport.
SEND_AT_ONCE = 16 * 1024

#: The least time between two sends of what a subscriber's transport holds
#: within one turn of the loop (see L{Outbox.pump}).
PUMP_INTERVAL = 0.002

#: Pieces of output smaller than this are copied into one bytes object, in
#: a chunk or in a slow subscriber's queue: each object a transport or a
#: queue holds costs about 100 bytes besides its data.
SMALL = 4096


def chunked(data: bytes) -> tuple[bytes, ...]:
    """
    C{data} as one chunk of a chunked HTTP response, in parts: one piece if
    it is small, else the size line, C{data} itself (not copied), the CRLF.
    """
    if len(data) < SMALL:
        return (b"%x\r\n%b\r\n" % (len(data), data),)
    return (b"%x\r\n" % len(data), data, b"\r\n")


def writeChunk(transport: ITransport, data: bytes) -> None:
    """
    Write C{data} as one chunk of a chunked HTTP response: what
    C{Request.write} does once the headers are out, minus its bookkeeping,
    which a stream whose headers are out and whose producer is registered
    does not need: the broker calls this once per subscriber per batch.
    """
    parts = chunked(data)
    if len(parts) == 1:
        transport.write(parts[0])
    else:
        transport.writeSequence(parts)


class Flusher:
    """
    Sends what the streams of plain sockets wrote in one turn of the
    reactor's loop when it ends: one system call for each subscriber, for
    all the batches of that turn, straight to the kernel (see
    L{logio.net.sendNow}), where a transport's write would first have the
    reactor watch the socket, and stop watching it, for every one.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._outboxes: dict[Outbox, None] = {}
        # The loop's own way to run something when a turn ends (see
        # logio.server.loop), if it has one; a timed call otherwise.
        self._atTurnEnd: Optional[Callable[[Callable[[], None]], None]] = getattr(
            clock, "callAtTurnEnd", None
        )
        self._waiting = False
        # The last data made a chunk, and its chunk (see chunk).
        self._chunked: Optional[bytes] = None
        self._chunk: tuple[tuple[bytes, ...], int] = ((), 0)
        self._turnStarted = monotonic()
        self._marker: Optional[IDelayedCall] = None

    def turnStarted(self) -> float:
        """
        When this turn of the loop began (L{monotonic}), as far as is
        known: the turn after the one that asked first is timed.
        """
        if self._marker is None:
            self._marker = self._clock.callLater(0, self._mark)
        return self._turnStarted

    def _mark(self) -> None:
        self._marker = None
        self._turnStarted = monotonic()

    def chunk(self, data: bytes) -> tuple[tuple[bytes, ...], int]:
        """
        C{data} as one chunk of a chunked HTTP response, in parts, and its
        size: the broker gives every subscriber of a group the same
        segment, whose chunk is made once for all of them.
        """
        if data is not self._chunked:
            parts = chunked(data)
            self._chunked, self._chunk = data, (parts, sum(map(len, parts)))
        return self._chunk

    def add(self, outbox: Outbox) -> None:
        """
        C{outbox} has output to send when this turn of the loop ends.
        """
        self._outboxes[outbox] = None
        if not self._waiting:
            self._waiting = True
            if self._atTurnEnd is not None:
                self._atTurnEnd(self._flush)
            else:
                self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._waiting = False
        outboxes, self._outboxes = self._outboxes, {}
        for outbox in outboxes:
            try:
                outbox.flush()
            except Exception:
                self.log.failure("Sending a subscriber's output failed")


class Outbox:
    """
    What a stream over a plain socket wrote in this turn of the loop, for
    its L{Flusher} to send when the turn ends.  Apart from the stream, so
    the stream refers to nothing that refers back to it: a stream that
    ends is freed at once, and its transport's buffer with it.

    @ivar size: The bytes waiting.
    """

    def __init__(self, transport: Connection, flusher: Flusher) -> None:
        self._transport: Optional[Connection] = transport
        self._flusher = flusher
        self._parts: list[bytes] = []
        self.size = 0
        self._pumped = monotonic()

    def write(self, data: bytes) -> None:
        """
        Send C{data} as one chunk of the response when this turn of the
        loop ends; or, with what waits, through the transport now if
        together they are more than L{SEND_AT_ONCE}: the transport sends
        that when the socket can take it, in larger pieces to a subscriber
        that reads more slowly than it is written to, and pauses the stream
        at once if it holds too much.
        """
        transport = self._transport
        if transport is None:
            return
        parts, size = self._flusher.chunk(data)
        if self.size + size > SEND_AT_ONCE:
            waiting, self._parts, self.size = self._parts, [], 0
            transport.writeSequence([*waiting, *parts])
            self.pump()
            return
        if not self._parts:
            self._flusher.add(self)
        self._parts += parts
        self.size += size

    def pump(self) -> None:
        """
        Send what the transport holds now, in a turn of the loop that has
        gone on for L{PUMP_INTERVAL}, at most that often: in a long turn (a
        hundred publishers' reads, each batch written here) the reactor
        would send it only when the turn ends, and a subscriber that reads
        faster than that would wait, idle, while its queue overflows.  In
        short turns the reactor sends it, in larger pieces.
        """
        transport = self._transport
        if transport is None or not bufferedBytes(transport):
            return
        now = monotonic()
        started = self._flusher.turnStarted()
        if now - started < PUMP_INTERVAL or now - self._pumped < PUMP_INTERVAL:
            return
        self._pumped = now
        if transport.connected and not transport.disconnecting:
            # As the reactor would when the socket can take more: what the
            # kernel does not take stays, and an error is met again there.
            transport.doWrite()

    def flush(self) -> None:
        """
        Send what was written in this turn of the loop.
        """
        parts, self._parts = self._parts, []
        self.size = 0
        if parts and self._transport is not None:
            sendNow(self._transport, parts)

    def clear(self) -> None:
        """
        Forget what waits: the stream is over, or its connection is.
        """
        self._parts = []
        self.size = 0

    def close(self) -> None:
        """
        Forget what waits, and the transport.
        """
        self.clear()
        self._transport = None


_flushers: WeakKeyDictionary[IReactorTime, Flusher] = WeakKeyDictionary()


def flusherOf(clock: IReactorTime) -> Flusher:
    """
    The one L{Flusher} of C{clock}'s loop.
    """
    flusher = _flushers.get(clock)
    if flusher is None:
        flusher = _flushers[clock] = Flusher(clock)
    return flusher
