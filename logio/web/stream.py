# -*- test-case-name: tests.test_web -*-
"""
A subscription's output stream: an IPushProducer that writes what the
broker delivers straight to its response while the client keeps up, and
queues it, bounded in lines and bytes, while the transport is paused; and
the bound on what all streams hold together.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import Optional

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from logio.formats import SHUTTING_DOWN, dropMessage
from logio.interfaces import IFilters, IFormat, ISubscriber, Segment
from logio.net import bufferedBytes, plainSocket
from logio.stats import Stats
from logio.topic import formatEpoch
from logio.web.output import SMALL, Outbox, flusherOf, writeChunk

#: How long a stopping server waits for subscribers' sockets to flush.
CLOSE_TIMEOUT = 5.0

#: How far over its byte bound one write may take what a subscriber holds.
SLACK = 64 * 1024


def _afterNth(data: bytes, end: bytes, nth: int, count: int) -> int:
    """
    Where, in C{data} that holds C{count} records each ending in C{end}
    (found nowhere else), the C{nth} record ends; 0 for the 0th.  Records
    of a segment are about the same size, so a guess from the average is
    near, and a few searches from there find it without splitting C{data}.
    """
    if nth <= 0:
        return 0
    position = data.find(end, max(len(data) * nth // count - len(end), 0))
    if position < 0:
        position = data.rfind(end)
    seen = data.count(end, 0, position + len(end))
    while seen < nth:
        position = data.find(end, position + len(end))
        seen += 1
    while seen > nth:
        position = data.rfind(end, 0, position)
        seen -= 1
    return position + len(end)


def _unsent(segments: list[Segment], size: int) -> tuple[int, int]:
    """
    What a transport that still holds C{size} bytes did not send, when
    C{segments} were the last it was given: the lines of them it holds, and
    how many bytes of output written before them.
    """
    lines = 0
    for segment in reversed(segments):
        if size <= 0:
            break
        if size >= len(segment.data) or segment.end is None:
            lines += segment.lines
        else:
            lines += segment.data.count(segment.end, len(segment.data) - size)
        size -= len(segment.data)
    return lines, max(size, 0)


class QueueBudget:
    """
    The bound on what all subscribers hold together: their queues, and what
    the transports of stalled ones hold.  Past C{maxBytes}, the biggest
    queues drop their oldest records first, each with its own drop notice;
    if that is not enough, the stalled subscribers holding the most are
    disconnected.

    @ivar total: Bytes held now, for every subscriber together.
    """

    log = Logger()

    def __init__(self, maxBytes: int) -> None:
        self.maxBytes = maxBytes
        self.total = 0
        #: The subscriptions that have something queued.
        self._queues: dict[Stream, None] = {}
        #: The paused subscriptions whose transports hold bytes, and how many.
        self._stalled: dict[Stream, int] = {}

    def holding(self, stream: Stream, size: int) -> None:
        """
        C{stream}'s transport, which paused it, holds C{size} bytes
        (0: it has sent them all).
        """
        self.total += size - self._stalled.pop(stream, 0)
        if size:
            self._stalled[stream] = size

    def grew(self, stream: Stream, size: int) -> None:
        """
        C{stream}'s queue grew by C{size} bytes.
        """
        self.total += size
        self._queues[stream] = None

    def changed(self, stream: Stream, size: int) -> None:
        """
        C{stream}'s queue grew (or shrank) by C{size} bytes.
        """
        self.total += size
        if stream.queued[1]:
            self._queues[stream] = None
        else:
            self._queues.pop(stream, None)

    def check(self) -> None:
        """
        Shed the biggest queues until everything fits together; then, if
        need be, disconnect the stalled subscribers holding the most.
        """
        while self.total > self.maxBytes and self._queues:
            biggest = max(self._queues, key=lambda stream: stream.queued[1])
            biggest.shed(self.total - self.maxBytes)
        while self.total > self.maxBytes and self._stalled:
            biggest = max(self._stalled, key=self._stalled.__getitem__)
            self.log.warn(
                "Subscribers together hold more than {maxBytes} bytes: disconnecting one "
                "that is not reading, whose transport holds {size}",
                maxBytes=self.maxBytes,
                size=self._stalled[biggest],
            )
            biggest.abort()


@implementer(IPushProducer, ISubscriber)
class Stream:
    """
    One subscriber: writes its output to its request while the client keeps
    up, and queues it while the transport is paused.

    The queue holds at most C{maxLines} output lines, and the queue and the
    socket's transport together at most C{maxBytes} bytes (plus L{SLACK}):
    the bound is applied before a write, so output larger than it is cut
    at record boundaries first.  The oldest records go, and the count of
    what went is sent in one notice before anything else.

    @ivar dropped: Lines dropped and not yet reported to the client.
    @ivar droppedTotal: Lines dropped since the subscription began.
    @ivar spoke: Whether anything was written since this was last cleared.
    """

    def __init__(
        self,
        request: Request,
        filters: IFilters,
        format: IFormat,
        clock: IReactorTime,
        maxLines: int,
        maxBytes: int,
        stats: Stats,
        budget: QueueBudget,
        socket: Optional[FileDescriptor] = None,
    ) -> None:
        self.filters = filters
        self.format = format
        self._request: Optional[Request] = request
        self._clock = clock
        self._maxLines = maxLines
        self._maxBytes = maxBytes
        self._stats = stats
        self._socket = socket
        self._budget = budget
        self._paused = False
        self._finishing = False
        self._queue: deque[Segment] = deque()
        self._queuedLines = 0
        self._queuedBytes = 0
        # Over a plain socket: what was written in this turn of the loop.
        self._outbox: Optional[Outbox] = None
        self.dropped = 0
        self.droppedTotal = 0
        self.spoke = False

    @property
    def queued(self) -> tuple[int, int]:
        """
        Lines and bytes waiting in the queue.
        """
        return self._queuedLines, self._queuedBytes

    def startStreaming(self) -> None:
        """
        The response headers are out: from now on, chunks of a chunked
        response go straight to the connection's transport.
        """
        assert self._request is not None
        transport = self._request.channel.transport
        if self._request.chunked and plainSocket(transport):
            self._outbox = Outbox(transport, flusherOf(self._clock))
            self._write = self._outbox.write  # type: ignore[method-assign]
        elif self._request.chunked and transport is not None:
            self._write = partial(writeChunk, transport)  # type: ignore[method-assign]

    def _write(self, data: bytes) -> None:
        """
        Send C{data} as part of the response.
        """
        if self._request is not None:
            self._request.write(data)

    def flush(self) -> None:
        """
        Send at once what was written in this turn of the loop.
        """
        if self._outbox is not None:
            self._outbox.flush()

    def _held(self) -> int:
        """
        What the socket's transport holds, and what waits to go to it.
        """
        return bufferedBytes(self._socket) + (self._outbox.size if self._outbox else 0)

    def deliver(self, segment: Segment) -> None:
        if not self._paused:
            data = segment.data
            if len(data) > SLACK and len(data) > self._room():
                self._deliverCut(segment)
                return
            if self.dropped:
                # Lines skipped before this segment (see L{skip}).
                self._sendNotice()
            self.spoke = True
            self._stats.bytesOut += len(data)
            self._write(data)
            return
        queue = self._queue
        if (
            segment.end is not None
            and len(segment.data) < SMALL
            and queue
            and queue[-1].end == segment.end
            and len(queue[-1].data) < SMALL
        ):
            # Many small batches queue up behind a stalled subscriber: keep
            # them in fewer, larger segments.
            last = queue[-1]
            queue[-1] = Segment(last.data + segment.data, last.lines + segment.lines, segment.end)
        else:
            queue.append(segment)
        size = len(segment.data)
        self._queuedLines += segment.lines
        self._queuedBytes += size
        budget = self._budget
        budget.grew(self, size)
        held = self._held()
        if self._queuedLines > self._maxLines or self._queuedBytes + held > self._maxBytes:
            self._trim(self._maxBytes - held)
        if budget.total > budget.maxBytes:
            budget.check()
        if self._outbox is not None:
            self._outbox.pump()

    def _queued(self, lines: int, size: int) -> None:
        """
        The queue grew (or, if negative, shrank) by C{lines} and C{size} bytes.
        """
        self._queuedLines += lines
        self._queuedBytes += size
        self._budget.changed(self, size)

    def _room(self) -> int:
        """
        How many more bytes this subscriber may hold, one write's slack
        included.
        """
        return self._maxBytes + SLACK - self._queuedBytes - self._held()

    def _deliverCut(self, segment: Segment) -> None:
        """
        Deliver the newest records of C{segment} that fit in what the
        subscriber may still hold, and drop the rest: it is larger than the
        bound, and must not be written whole.
        """
        data, end = segment.data, segment.end
        room = self._room()
        if end is None:
            cut = len(data)
        else:
            cut = data.find(end, max(len(data) - room - len(end), 0)) + len(end)
            if cut < len(data) - room:
                cut = len(data)
        gone = segment.lines if end is None or cut >= len(data) else data.count(end, 0, cut)
        self._drop(gone)
        self._sendNotice()
        if cut < len(data):
            self._stats.bytesOut += len(data) - cut
            self._write(data[cut:])

    def _drop(self, lines: int) -> None:
        self.dropped += lines
        self.droppedTotal += lines
        self._stats.linesDropped[self.format.name] += lines

    def _sendNotice(self) -> None:
        """
        Tell the client how many lines it lost since it was last told.
        """
        dropped, self.dropped = self.dropped, 0
        data = self.format.notice(formatEpoch(self._clock.seconds()), dropMessage(dropped), dropped)
        self.spoke = True
        self._stats.bytesOut += len(data)
        self._write(data)

    def notify(self, message: str, dropped: Optional[int] = None) -> None:
        """
        Send the subscriber a notice from the server, in its format, behind
        what is already queued.
        """
        data = self.format.notice(formatEpoch(self._clock.seconds()), message, dropped)
        self.deliver(Segment(data, 1, None))

    def lost(self, count: int, message: str) -> None:
        """
        C{count} records will never reach this subscriber (the cluster
        could not relay them): say so now if nothing is queued; else count
        them with the lines dropped, which the next notice of drops tells,
        so the figure is never lost with a notice trimmed from the queue.
        """
        if self._paused or self._queue:
            self.dropped += count
            self.droppedTotal += count
        else:
            self.notify(message, count)

    def room(self) -> int:
        # At most what deliver or the queue's trim would keep of a segment
        # (the transport's buffer not counted: this is asked per batch).
        if self._paused:
            return self._maxBytes
        return max(SLACK, self._maxBytes + SLACK - self._queuedBytes)

    def skip(self, lines: int) -> None:
        # Told in the notice that goes before the next output written.
        self._drop(lines)

    def keepAlive(self) -> None:
        """
        Tell a silent stream the server is still there, if its format can
        and the client is reading.
        """
        if self.format.keepAlive is not None and not (self._paused or self._queue):
            self.deliver(Segment(self.format.keepAlive, 0, None))

    def shed(self, size: int) -> None:
        """
        Drop at least C{size} bytes of the oldest queued records (all of
        them if there are fewer): the server's queues together are too big.
        """
        self._trim(self._queuedBytes - size)

    def _trim(self, maxBytes: int) -> None:
        """
        Drop the oldest queued records until the queue holds at most
        C{maxLines} lines and C{maxBytes} bytes, never splitting a record.
        """
        queue = self._queue
        queuedLines, queuedBytes = self._queuedLines, self._queuedBytes
        while queue and (queuedLines > self._maxLines or queuedBytes > maxBytes):
            segment = queue[0]
            data, lines, end = segment.data, segment.lines, segment.end
            excessLines = queuedLines - self._maxLines
            excessBytes = queuedBytes - maxBytes
            if end is not None and excessLines < lines and excessBytes < len(data):
                # Keep the newest part of this segment: cut after the first
                # record end that removes enough lines and enough bytes.
                cut, gone = (_afterNth(data, end, excessLines, lines), excessLines)
                if excessBytes > cut:
                    cut = data.index(end, max(excessBytes - len(end), 0)) + len(end)
                    gone = data.count(end, 0, cut)
                if cut < len(data):
                    queue[0] = Segment(data[cut:], lines - gone, end)
                else:
                    queue.popleft()
            else:
                queue.popleft()
                cut, gone = len(data), lines
            queuedLines -= gone
            queuedBytes -= cut
        gone = self._queuedLines - queuedLines
        if gone:
            self._queued(-gone, queuedBytes - self._queuedBytes)
            self._drop(gone)

    def pauseProducing(self) -> None:
        self._paused = True
        # The transport holds as much as it will: it counts in the
        # server-wide bound until it has sent it all (and resumes us).
        held = self._held()
        if held:
            self._budget.holding(self, held)
            self._budget.check()

    def resumeProducing(self) -> None:
        self._paused = False
        self._budget.holding(self, 0)
        if self.dropped:
            self._sendNotice()
        while self._queue and not self._paused:
            segment = self._queue.popleft()
            self._queued(-segment.lines, -len(segment.data))
            self._stats.bytesOut += len(segment.data)
            self._write(segment.data)
        if self._finishing and not (self._queue or self._paused):
            self._finish()

    def stopProducing(self) -> None:
        if self._outbox is not None:
            self._outbox.clear()
        self._queue.clear()
        self._queued(-self._queuedLines, -self._queuedBytes)
        self._budget.holding(self, 0)

    def finishWhenSent(self) -> None:
        """
        Nothing more will be delivered: end the response once the queue has
        been sent.
        """
        self._finishing = True
        if not (self._queue or self._paused):
            self._finish()

    def _finish(self) -> None:
        """
        End the response and then the connection: it reads no further
        requests once it has streamed.
        """
        self._finishing = False
        request = self._request
        if request is not None and not request.finished and request.channel is not None:
            channel = request.channel
            self.flush()
            request.unregisterProducer()
            request.finish()
            if channel.transport is not None:
                channel.transport.loseConnection()

    def release(self) -> None:
        """
        The response is over: let go of the request and of anything queued,
        so nothing here waits for the cyclic garbage collector (the request
        refers to this producer too).
        """
        self.stopProducing()
        self._request = None
        if self._outbox is not None:
            self._outbox.close()

    def abort(self) -> None:
        self.stopProducing()
        # A request whose connection is already gone has no channel.
        request = self._request
        channel = request.channel if request is not None else None
        if channel is not None and channel.transport is not None:
            channel.transport.abortConnection()  # type: ignore[attr-defined]

    def close(self) -> Deferred[tuple[int, int]]:
        # Only live subscriptions are registered: one whose client went
        # away was unsubscribed and released when its request finished.
        request = self._request
        if request is None or request.finished:
            return succeed((0, 0))
        # Everything queued goes to the transport now, paused or not: it is
        # the last chance, and the bound holds for the two together.
        last = list(self._queue)
        if self.dropped:
            self._sendNotice()
        self._queue.clear()
        self._queued(-self._queuedLines, -self._queuedBytes)
        for segment in last:
            self._stats.bytesOut += len(segment.data)
            self._write(segment.data)
        # A stream that just ends looks like a filter that matches nothing:
        # say why it ends, in the stream's format.
        notice = self.format.notice(formatEpoch(self._clock.seconds()), SHUTTING_DOWN)
        self._stats.bytesOut += len(notice)
        self._write(notice)
        transport = request.channel.transport
        assert transport is not None
        socket = self._socket
        self.flush()
        request.unregisterProducer()
        request.finish()
        transport.loseConnection()
        closed: Deferred[tuple[int, int]] = Deferred()

        def check() -> None:
            if getattr(transport, "disconnected", True):
                closed.callback((0, 0))
            elif self._clock.seconds() > deadline:
                held = bufferedBytes(socket) - len(notice)
                closed.callback(_unsent(last, max(held, 0)))
            else:
                self._clock.callLater(0.05, check)

        deadline = self._clock.seconds() + CLOSE_TIMEOUT
        check()
        return closed
