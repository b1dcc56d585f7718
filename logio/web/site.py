# -*- test-case-name: tests.test_web -*-
"""
The subscriber side: the HTTP root routes reserved paths to their resources
and every other path to L{SubscribeResource}, where each request becomes a
L{Subscription}: an IPushProducer with a bounded queue, registered with the
broker.
"""

from __future__ import annotations

import re
from collections import deque
from functools import partial
from io import BytesIO
from typing import Any, Mapping, Optional, Sequence
from urllib.parse import parse_qs

from attrs import frozen
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel, combinedLogFormatter
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer, provider

from logio.auth import Grant, Tokens, grantOf
from logio.filters import FILTER_FIELDS, BadFilter, Filters
from logio.formats import (
    JSONFormat,
    Segment,
    SSEFormat,
    TextFormat,
    chooseFormat,
    dropMessage,
    parseEventId,
)
from logio.ingest.http import MAX_OTLP_BODY, Ingest, OTLPResource, PublishResource, Sink
from logio.interfaces import IBroker, IFormat, ISubscriber
from logio.net import PAUSE_AT, bufferedBytes, describePeer, tuneSocket, widenWrites
from logio.refusals import Refusals
from logio.stats import Stats
from logio.topic import formatEpoch, serverHost
from logio.web.gate import PUBLISH, Gate, Refusal, presented
from logio.web.status import (
    HealthResource,
    MetricsResource,
    NotFoundResource,
    TopicsResource,
    reply,
)
from logio.web.viewer import ViewerResource

#: How long a stopping server waits for subscribers' sockets to flush.
CLOSE_TIMEOUT = 5.0
#: A token in a query string, for the log.
_TOKEN = re.compile(rb"([?&])token=[^&]*")
#: The query parameters of a subscription.
PARAMETERS = (*FILTER_FIELDS, "tail", "follow", "format", "last_event_id", "token")
#: C{follow=} values, and what each means.
_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
#: A keep-alive goes to a stream that has been silent for this many
#: seconds (give or take one sweep).
KEEP_ALIVE = 15.0
_SWEEPS = 3

#: How many records of a replay are encoded into one piece of output.
REPLAY_PIECE = 256

#: How far over its byte bound one write may take what a subscriber holds.
SLACK = 64 * 1024

#: Pieces of output smaller than this are copied into one bytes object, in
#: a chunk or in a slow subscriber's queue: each object a transport or a
#: queue holds costs about 100 bytes besides its data.
SMALL = 4096


def _writeChunk(transport: ITransport, data: bytes) -> None:
    """
    Write C{data} as one chunk of a chunked HTTP response: what
    C{Request.write} does once the headers are out, minus its bookkeeping,
    which costs more than the write itself for the one-line chunks of a
    quiet stream with many subscribers.
    """
    if len(data) < SMALL:
        transport.write(b"%x\r\n%b\r\n" % (len(data), data))
    else:
        transport.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))


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
        self._queues: dict[Subscription, None] = {}
        #: The paused subscriptions whose transports hold bytes, and how many.
        self._stalled: dict[Subscription, int] = {}

    def holding(self, subscription: Subscription, size: int) -> None:
        """
        C{subscription}'s transport, which paused it, holds C{size} bytes
        (0: it has sent them all).
        """
        self.total += size - self._stalled.pop(subscription, 0)
        if size:
            self._stalled[subscription] = size

    def grew(self, subscription: Subscription, size: int) -> None:
        """
        C{subscription}'s queue grew by C{size} bytes.
        """
        self.total += size
        self._queues[subscription] = None

    def changed(self, subscription: Subscription, size: int) -> None:
        """
        C{subscription}'s queue grew (or shrank) by C{size} bytes.
        """
        self.total += size
        if subscription.queued[1]:
            self._queues[subscription] = None
        else:
            self._queues.pop(subscription, None)

    def check(self) -> None:
        """
        Shed the biggest queues until everything fits together; then, if
        need be, disconnect the stalled subscribers holding the most.
        """
        while self.total > self.maxBytes and self._queues:
            biggest = max(self._queues, key=lambda subscription: subscription.queued[1])
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
class Subscription:
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
        filters: Filters,
        format: IFormat,
        clock: IReactorTime,
        maxLines: int,
        maxBytes: int,
        stats: Stats,
        socket: Optional[FileDescriptor] = None,
        budget: Optional[QueueBudget] = None,
    ) -> None:
        self.filters = filters
        self.format = format
        self._request: Optional[Request] = request
        self._clock = clock
        self._maxLines = maxLines
        self._maxBytes = maxBytes
        self._stats = stats
        self._socket = socket
        self._budget = budget or QueueBudget(maxBytes)
        self._paused = False
        self._finishing = False
        self._queue: deque[Segment] = deque()
        self._queuedLines = 0
        self._queuedBytes = 0
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
        if self._request.chunked and transport is not None:
            self._write = partial(_writeChunk, transport)  # type: ignore[method-assign]

    def _write(self, data: bytes) -> None:
        """
        Send C{data} as part of the response.
        """
        if self._request is not None:
            self._request.write(data)

    def deliver(self, segment: Segment) -> None:
        if not self._paused:
            data = segment.data
            if len(data) > SLACK and len(data) > self._room():
                self._deliverCut(segment)
                return
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
        held = bufferedBytes(self._socket)
        if self._queuedLines > self._maxLines or self._queuedBytes + held > self._maxBytes:
            self._trim(self._maxBytes - held)
        if budget.total > budget.maxBytes:
            budget.check()

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
        return self._maxBytes + SLACK - self._queuedBytes - bufferedBytes(self._socket)

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
        held = bufferedBytes(self._socket)
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
        transport = request.channel.transport
        assert transport is not None
        socket = self._socket
        request.unregisterProducer()
        request.finish()
        transport.loseConnection()
        closed: Deferred[tuple[int, int]] = Deferred()

        def check() -> None:
            if getattr(transport, "disconnected", True):
                closed.callback((0, 0))
            elif self._clock.seconds() > deadline:
                closed.callback(_unsent(last, bufferedBytes(socket)))
            else:
                self._clock.callLater(0.05, check)

        deadline = self._clock.seconds() + CLOSE_TIMEOUT
        check()
        return closed


#: How long a client has to send a request line and its headers.
REQUEST_DEADLINE = 10.0
#: The largest request body read (in memory, never spooled to disk); a
#: larger one gets 413.
MAX_BODY = 64 * 1024


class _Discard(Sink):
    """
    Where the body of a request refused for its size goes: nowhere.
    """

    def write(self, data: bytes) -> None:
        pass


class SubscriberRequest(Request):
    """
    A request whose body is kept in memory up to L{MAX_BODY} (or what the
    root allows for its path, see L{RootResource.bodyFor}) and refused
    beyond it, never written to a temporary file; or, for C{POST /publish},
    handed to the ingest as it arrives.
    """

    channel: SubscriberChannel

    content: Any

    def gotLength(self, length: Optional[int]) -> None:
        self._bodyLength = 0
        self._maxBody: Optional[int] = MAX_BODY
        root = getattr(getattr(self.channel, "site", None), "resource", None)
        if isinstance(root, RootResource):
            # The request line is read, the body not yet: the channel holds
            # the method and target until the request is complete.
            sink, self._maxBody = root.bodyFor(
                self,
                self.channel._command,
                self.channel._path,
            )
            if sink is not None:
                self.content = sink
                return
        if self._maxBody is not None and length is not None and length > self._maxBody:
            self.content = _Discard()
            self.channel.refuse(413, b"Payload Too Large", self._tooLarge())
        else:
            self.content = BytesIO()

    def _tooLarge(self) -> str:
        return f"a request body here may hold at most {self._maxBody} bytes"

    def handleContentChunk(self, data: bytes) -> None:
        self._bodyLength += len(data)
        if self._maxBody is not None and self._bodyLength > self._maxBody:
            self.content = _Discard()
            self.channel.refuse(413, b"Payload Too Large", self._tooLarge())
        else:
            self.content.write(data)

    def process(self) -> None:
        if not self.channel.refused:
            super().process()

    def connectionLost(self, reason: Failure) -> None:
        """
        The client went away before the request was answered: let go of
        what its body held (the publications of a C{POST /publish} cut
        short).
        """
        super().connectionLost(reason)
        content = getattr(self, "content", None)
        if isinstance(content, Sink):
            content.close()


@implementer(IHalfCloseableProtocol)
class SubscriberChannel(HTTPChannel):
    """
    An HTTP connection with deadlines and bounds, which, once its request
    has become a subscription, throws away whatever else the client sends.
    Twisted's channel would buffer it and, past 16 KiB, stop reading the
    socket, and then never see the client go away.

    A request line and its headers must arrive within L{REQUEST_DEADLINE}
    (however slowly they trickle in), a body may not pass L{MAX_BODY}, and
    a client that half-closes after its request still gets its response.

    @ivar refused: Whether the connection was answered with an error and is
        being closed; what else it sends is ignored.
    """

    streaming = False
    _subscription: Optional[Subscription] = None
    refused = False
    _first = True
    _readClosed = False
    _deadline: Optional[IDelayedCall] = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._deadline = self.callLater(REQUEST_DEADLINE, self._tooSlow)

    def _tlsOnPlainPort(self) -> None:
        """
        The client began with a TLS handshake (a ClientHello): an answer in
        plain HTTP would mean nothing to it, so log why and close.
        """
        self.refused = True
        self._stopDeadline()
        self._logRefusal(
            "TLS on a plain HTTP port",
            f"{describePeer(self.getPeer())}: a TLS ClientHello on a plain HTTP port "
            "(use http:// here, or give the server an ssl: endpoint for https://)",
        )
        assert self.transport is not None
        self.transport.loseConnection()

    def _stopDeadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _tooSlow(self) -> None:
        self._deadline = None
        self.refuse(
            408,
            b"Request Timeout",
            f"the request line and headers must arrive within {REQUEST_DEADLINE:g} s",
        )

    def refuse(self, code: int, reason: bytes, message: str) -> None:
        """
        Answer C{code} with C{message} at once, outside any request, and
        close the connection.
        """
        if self.refused:
            return
        self._logRefusal(message, describePeer(self.getPeer()))
        self.answer(code, message, reason=reason)

    def _logRefusal(self, cause: str, detail: str) -> None:
        """
        Count and log a refusal in the site's refusals, if it keeps them.
        """
        refusals = getattr(getattr(self, "site", None), "refusals", None)
        if refusals is not None:
            refusals.refuse("subscriber", cause, detail)

    def answer(
        self,
        code: int,
        message: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        reason: Optional[bytes] = None,
    ) -> None:
        """
        Answer C{code} with C{message} at once, outside any request (the
        body of the request being read, if any, is ignored), and close the
        connection.
        """
        if self.refused:
            return
        self.refused = True
        self._stopDeadline()
        body = f"{message}\n".encode()
        extra = b"".join(b"%s: %s\r\n" % header for header in headers)
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n%s"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (code, reason or RESPONSES.get(code, b"Error"), extra, len(body), body)
        )
        self.transport.loseConnection()

    def allHeadersReceived(self) -> None:
        self._stopDeadline()
        super().allHeadersReceived()

    def requestDone(self, request: Request) -> None:
        super().requestDone(request)
        if self._readClosed and not self.streaming and self.transport is not None:
            self.transport.loseConnection()
        elif not (self.streaming or self.refused) and self._deadline is None:
            # The next request of a persistent connection has its own deadline.
            self._deadline = self.callLater(REQUEST_DEADLINE, self._tooSlow)

    def readConnectionLost(self) -> None:
        """
        The client has sent all it will: answer what it asked, then close.
        A stream goes on, since a client that only half-closed still reads;
        one that left is found at the next writes (a keep-alive, where the
        format has one, is sent at once to find out).
        """
        self._readClosed = True
        if not (self.streaming or self.requests) and self.transport is not None:
            self.transport.loseConnection()
        elif self._subscription is not None:
            self._subscription.keepAlive()

    def writeConnectionLost(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopDeadline()
        super().connectionLost(reason)

    def startStreaming(self, subscription: Subscription) -> None:
        """
        The request is now C{subscription}: keep reading, ignore the bytes.
        """
        self.streaming = True
        self._subscription = subscription
        self._keepReading()

    def _keepReading(self) -> None:
        assert self.transport is not None
        if not self.transport.disconnecting:  # type: ignore[attr-defined]
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if self.streaming or self.refused:
            return
        if self._first:
            self._first = False
            if data.startswith(b"\x16"):
                self._tlsOnPlainPort()
                return
        super().dataReceived(data)
        if self.streaming:
            # The rest of the read that held the request was buffered, and
            # may have paused reading.
            self._keepReading()


def hideToken(uri: bytes) -> bytes:
    """
    C{uri} with the value of a C{token=} in its query left out, for the log.
    """
    return _TOKEN.sub(rb"\1token=...", uri)


@provider(IAccessLogFormatter)
def accessLogLine(timestamp: str, request: Request) -> str:
    """
    Twisted's combined log line for C{request}, with any C{token=} in its
    query left out.
    """
    uri = request.uri
    hidden = hideToken(uri)
    if hidden == uri:
        return combinedLogFormatter(timestamp, request)
    request.uri = hidden
    try:
        return combinedLogFormatter(timestamp, request)
    finally:
        request.uri = uri


class SubscriberSite(Site):
    """
    The subscriber port's site: a L{RootResource} behind
    L{SubscriberChannel}s.
    """

    protocol = SubscriberChannel  # type: ignore[assignment]
    requestFactory = SubscriberRequest

    def __init__(self, resource: Resource, **kwargs: Any) -> None:
        kwargs.setdefault("logFormatter", accessLogLine)
        super().__init__(resource, **kwargs)

    @property
    def refusals(self) -> Optional[Refusals]:
        """
        Where the connections' refusals are counted and logged: the root's.
        """
        return getattr(self.resource, "refusals", None)


class BadRequest(Exception):
    """
    A subscription request that cannot be served; the message says why.
    """


@frozen
class _Asked:
    """
    What a subscription request asked for.

    @ivar after: The sequence number to resume after, if any.
    @ivar stale: An event id from an earlier run of the server, if given.
    """

    filters: Filters
    format: IFormat
    tail: int
    follow: bool
    after: Optional[int]
    stale: Optional[str]


class SubscribeResource(Resource):
    """
    Any path but the reserved ones: C{GET /?app=RE&proc=RE&host=RE&log=RE}
    streams every matching record until the client goes away, in the
    format asked for; C{tail}, C{last_event_id} and C{follow} replay
    history first, or only.  HEAD checks the request and returns the
    headers only.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        start: int,
        maxLines: int = 10000,
        maxBytes: int = 4 * 1024 * 1024,
        maxSubscribers: int = 20000,
        maxLogFilters: int = 100,
        maxQueuedBytes: int = 256 * 1024 * 1024,
        refusals: Optional[Refusals] = None,
        tokens: Optional[Tokens] = None,
    ) -> None:
        super().__init__()
        self._broker = broker
        self.clock = clock
        self._maxSubscribers = maxSubscribers
        self._maxLogFilters = maxLogFilters
        self._budget = QueueBudget(maxQueuedBytes)
        self.refusals = self._refusals = refusals or Refusals(broker.stats, clock)
        #: Open subscription requests, live or replaying.
        self._open = 0
        #: How many open subscriptions use each C{log} pattern.
        self._logFilters: dict[str, int] = {}
        self._clock = clock
        self._start = start
        self._maxLines = maxLines
        self._maxBytes = maxBytes
        #: The byte bound covers the queue and the transport's buffer both.
        #: The transport pauses a subscription at a quarter of it, up to
        #: PAUSE_AT; but a small bound gives up to half of it, up to 256 KiB,
        #: since pausing much earlier makes a subscriber that keeps up
        #: lose lines (see L{logio.net.SEND_LIMIT}).
        self._pauseAt = max(min(PAUSE_AT, maxBytes // 4), min(256 * 1024, maxBytes // 2))
        self.formats: Mapping[str, IFormat] = {
            format.name: format
            for format in (TextFormat(serverHost()), JSONFormat(), SSEFormat(start))
        }
        self._quiet: dict[Subscription, int] = {}
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock
        #: The open subscriptions of a server with C{--auth}: the token each
        #: presented, and what it allowed then.
        self._granted: dict[Subscription, tuple[str, Grant]] = {}
        self._tokens = tokens
        if tokens is not None:
            tokens.watch(self._tokensReloaded)

    def _parse(self, request: Request) -> _Asked:
        """
        Read a subscription request's parameters and headers.

        @raise BadRequest: If any is unknown or malformed.
        """
        args = {
            name.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
            for name, values in (request.args or {}).items()
        }
        unknown = sorted(set(args) - set(PARAMETERS))
        if unknown:
            raise BadRequest(
                f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))}: use {' '.join(PARAMETERS)}"
            )
        if args.get("log") in self._broker.costlyPatterns:
            raise BadRequest(
                f"bad regular expression for 'log': {args['log'][:200]!r}: it was too costly "
                "to match on the records published here"
            )
        try:
            filters = Filters.fromQuery(
                {name: args[name] for name in FILTER_FIELDS if name in args}, grantOf(request)
            )
            format = chooseFormat(self.formats, args.get("format"), request.getHeader(b"accept"))
        except (BadFilter, ValueError) as e:
            raise BadRequest(str(e)) from None
        tail = args.get("tail") or "0"
        if not (tail.isascii() and tail.isdigit() and len(tail) < 10):
            raise BadRequest(f"tail must be a number of records, not {tail!r}")
        follow = _BOOLEANS.get((args.get("follow") or "1").lower())
        if follow is None:
            raise BadRequest(f"follow must be 1 or 0, not {args['follow']!r}")
        header = request.getHeader(b"last-event-id")
        eventId = header.decode("utf-8", "replace") if header else args.get("last_event_id")
        after = stale = None
        if eventId:
            try:
                after = parseEventId(eventId, self._start)
            except ValueError as e:
                raise BadRequest(str(e)) from None
            stale = eventId if after is None else None
        return _Asked(filters, format, int(tail), follow, after, stale)

    def _refuse(
        self, request: Request, code: int, reason: str, cause: str = "bad request"
    ) -> bytes:
        peer = describePeer(request.getClientAddress())
        self._refusals.refuse("subscriber", cause, f"{peer}: {reason[:200]}")
        return reply(request, code, reason)

    def _overLimit(self, asked: _Asked) -> Optional[str]:
        """
        Why a new subscription would take the server past one of its
        limits, if it would.
        """
        if self._open >= self._maxSubscribers:
            return f"too many subscribers ({self._maxSubscribers}): try again later"
        pattern = asked.filters.log
        if (
            pattern is not None
            and pattern.text not in self._logFilters
            and len(self._logFilters) >= self._maxLogFilters
        ):
            return (
                f"too many distinct log= patterns ({self._maxLogFilters}): "
                "use one that others use, or try again later"
            )
        return None

    def _opened(self, subscription: Subscription, request: Request) -> None:
        self._open += 1
        grant = grantOf(request)
        token = presented(request)
        if grant is not None and token is not None:
            self._granted[subscription] = (token, grant)
        if subscription.filters.log is not None:
            text = subscription.filters.log.text
            self._logFilters[text] = self._logFilters.get(text, 0) + 1

    def _closed(self, subscription: Subscription) -> None:
        self._open -= 1
        self._granted.pop(subscription, None)
        subscription.release()
        if subscription.filters.log is not None:
            text = subscription.filters.log.text
            self._logFilters[text] -= 1
            if not self._logFilters[text]:
                del self._logFilters[text]

    def _streamHeaders(self, request: Request, format: IFormat) -> None:
        request.setHeader(b"content-type", format.contentType)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")

    def render(self, request: Request) -> bytes | int:
        """
        GET and HEAD only: any other method is a 405 naming the allowed ones.
        """
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return self._refuse(request, 405, "method not allowed: subscribe with GET")
        return super().render(request)

    def render_HEAD(self, request: Request) -> bytes:
        try:
            asked = self._parse(request)
        except BadRequest as e:
            return self._refuse(request, 400, str(e))
        self._streamHeaders(request, asked.format)
        return b""

    def render_GET(self, request: Request) -> bytes | int:
        try:
            asked = self._parse(request)
        except BadRequest as e:
            return self._refuse(request, 400, str(e))
        overLimit = self._overLimit(asked)
        if overLimit is not None:
            return self._refuse(request, 503, overLimit, overLimit.partition(" (")[0])
        self._streamHeaders(request, asked.format)
        channel = request.channel
        tuneSocket(channel.transport)
        socket = widenWrites(channel.transport, self._pauseAt)
        # The request phase is over: a quiet stream is not an idle client.
        channel.setTimeout(None)
        subscription = Subscription(
            request,
            asked.filters,
            asked.format,
            self._clock,
            self._maxLines,
            self._maxBytes,
            self._broker.stats,
            socket,
            self._budget,
        )
        self._opened(subscription, request)
        if isinstance(channel, SubscriberChannel):
            channel.startStreaming(subscription)
        request.registerProducer(subscription, True)
        request.write(b"")
        subscription.startStreaming()
        self._replay(subscription, asked)
        peer = describePeer(request.getClientAddress())
        query = hideToken(request.uri).partition(b"?")[2].decode("utf-8", "replace")
        if not asked.follow:
            request.notifyFinish().addBoth(lambda result: self._closed(subscription))
            subscription.finishWhenSent()
            return NOT_DONE_YET
        self._broker.subscribe(subscription)
        if asked.format.keepAlive is not None:
            self._quiet[subscription] = 0
            if not self._sweeper.running:
                self._sweeper.start(KEEP_ALIVE / _SWEEPS, now=False)
        self.log.info(
            "Subscriber {peer} subscribed to {query!r} ({count} subscribers)",
            peer=peer,
            query=query[:200],
            count=self._broker.subscriberCount(),
        )

        def finished(result: object) -> None:
            self._broker.unsubscribe(subscription)
            self._closed(subscription)
            self._quiet.pop(subscription, None)
            if not self._quiet and self._sweeper.running:
                self._sweeper.stop()
            self.log.info(
                "Subscriber {peer} went away, {dropped} lines dropped ({count} subscribers)",
                peer=peer,
                dropped=subscription.droppedTotal,
                count=self._broker.subscriberCount(),
            )

        request.notifyFinish().addBoth(finished)
        return NOT_DONE_YET

    def _replay(self, subscription: Subscription, asked: _Asked) -> None:
        """
        Deliver what history holds for a new subscription, through its
        queue like live records.
        """
        if asked.stale is not None:
            subscription.notify(
                f"event id {asked.stale!r} is from an earlier run of this server: "
                "the records after it are gone"
            )
        if not (asked.tail or asked.after is not None):
            return
        replay = self._broker.replay(asked.filters, asked.tail, asked.after)
        if replay.missed:
            subscription.notify(
                f"{replay.missed} records after event id {self._start}-{asked.after} "
                "are no longer in history",
                replay.missed,
            )
        lines = 0
        for run in replay.runs:
            encode = asked.format.encoder(run.topic)
            # In pieces, so the transport pauses the subscription after the
            # first few and the queue's bounds apply to the rest.
            for start in range(0, len(run.records), REPLAY_PIECE):
                end = start + REPLAY_PIECE
                for segment in encode(run.records[start:end], run.seqs[start:end]):
                    subscription.deliver(segment)
                    lines += segment.lines
        self._broker.stats.linesOut[asked.format.name] += lines

    def _tokensReloaded(self) -> None:
        """
        End the subscriptions whose tokens were taken away or now allow
        something else: the client learns why, and may subscribe again
        under what its token allows now.
        """
        assert self._tokens is not None
        for subscription, (token, grant) in list(self._granted.items()):
            if self._tokens.grant(token) != grant:
                del self._granted[subscription]
                self._broker.unsubscribe(subscription)
                subscription.notify(
                    "the tokens were reloaded and this token no longer allows this "
                    "subscription as it was: subscribe again"
                )
                subscription.finishWhenSent()

    def _sweep(self) -> None:
        """
        Send a keep-alive to each stream that has been silent for
        L{KEEP_ALIVE} seconds.
        """
        for subscription, quiet in list(self._quiet.items()):
            if subscription.spoke:
                subscription.spoke = False
                quiet = 0
            else:
                quiet += 1
                if quiet >= _SWEEPS:
                    subscription.keepAlive()
                    subscription.spoke = False
                    quiet = 0
            self._quiet[subscription] = quiet


#: Paths that never subscribe, and what serves each.
RESERVED = (b"healthz", b"metrics", b"topics", b"favicon.ico", b"ui", b"publish", b"v1")


class RootResource(Resource):
    """
    The subscriber port's root: the reserved paths (C{/healthz},
    C{/metrics}, C{/topics}, ...), and a subscription on every other path,
    as the original had on any path.
    """

    def __init__(
        self,
        broker: IBroker,
        subscribe: SubscribeResource,
        gate: Optional[Gate] = None,
        ingest: Optional[Ingest] = None,
    ) -> None:
        super().__init__()
        self._subscribe = subscribe
        self._gate = gate or Gate(subscribe.refusals)
        self.ingest = ingest or Ingest(broker, subscribe.clock, 65536)
        self.putChild(b"ui", ViewerResource())
        self.putChild(b"publish", PublishResource())
        self.putChild(b"v1", OTLPResource(self.ingest))
        self.putChild(b"healthz", HealthResource())
        self.putChild(b"metrics", MetricsResource(broker))
        self.putChild(b"topics", TopicsResource(broker))
        for name in RESERVED:
            if name not in self.children:
                self.putChild(name, NotFoundResource())

    @property
    def refusals(self) -> Refusals:
        """
        Where the subscriber port's refusals are counted and logged.
        """
        return self._subscribe.refusals

    def bodyFor(
        self, request: SubscriberRequest, method: bytes, target: bytes
    ) -> tuple[Any, Optional[int]]:
        """
        Where the body of C{request} for C{method} and C{target} goes, and
        how many bytes it may hold (L{None}: any number), decided before
        it arrives: a C{POST} that publishes is let in (or refused) by the
        gate now, and C{/publish} reads its body as it streams.

        @return: The body's file, or L{None} for one in memory; the bound.
        """
        path, _, query = target.partition(b"?")
        segment = path.lstrip(b"/").partition(b"/")[0]
        if method != b"POST" or segment not in PUBLISH:
            return None, MAX_BODY
        # What Request.requestReceived will set again, for the gate's use.
        request.args = parse_qs(query, keep_blank_values=True)
        refusal = self._gate.admit(request, segment)
        if isinstance(refusal, Refusal):
            refusal.early(request)
            return _Discard(), None
        if segment != b"publish":
            return None, MAX_OTLP_BODY
        body = self.ingest.lineBody(request)
        problem = body.checkQuery()
        if problem is not None:
            self._subscribe.refusals.refuse("publisher", "bad topic", problem)
            request.channel.answer(400, problem)
            return _Discard(), None
        return body, None

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        """
        Route C{request} by its first path segment C{path}, if the gate
        lets it in (see L{logio.web.gate}).
        """
        refusal = self._gate.admit(request, path)
        if refusal is not None:
            return refusal
        return super().getChildWithDefault(path, request)

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self._subscribe

    def render(self, request: Request) -> bytes | int:
        # A request whose path has no segment at all (C{GET ?app=x}).
        refusal = self._gate.admit(request, b"")
        if refusal is not None:
            return refusal.render(request)
        return self._subscribe.render(request)
