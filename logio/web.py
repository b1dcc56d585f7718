"""
The subscriber side: a streaming HTTP resource.  Each request becomes a
L{Subscription}, an IPushProducer with a bounded queue, registered with the
L{logio.broker.Broker}.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import Callable

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime, ITransport
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from logio.broker import FILTER_FIELDS, BadFilter, Broker, Filters
from logio.interfaces import ISubscriber
from logio.publish.base import tuneSocket
from logio.topic import formatEpoch, serverHost

PLAIN_TEXT = b"text/plain; charset=utf-8"
#: How long a stopping server waits for subscribers' sockets to flush.
CLOSE_TIMEOUT = 5.0


def dropNotice(stamp: str, host: str, dropped: int) -> bytes:
    """
    The line a subscriber gets after it lost C{dropped} lines.
    """
    return (
        f"{stamp} logio[logio] {host}: {dropped} lines dropped: "
        "this subscriber is reading too slowly\n"
    ).encode("utf-8", "replace")


#: How much a subscriber's socket may send in one reactor pass (Twisted's
#: default is 128 KiB), and how much may wait in its transport before the
#: subscription is paused and starts queueing (default 64 KiB).  With the
#: defaults, a chunk of output from one 64 KiB read already pauses the
#: subscription, and one chunk leaves the queue per pass while several
#: publishers' chunks arrive: a subscriber that keeps up would lose lines.
SEND_LIMIT = 4 * 1024 * 1024
PAUSE_AT = 1024 * 1024


def widenWrites(transport: object, pauseAt: int = PAUSE_AT) -> int:
    """
    Apply L{SEND_LIMIT} and the pause threshold C{pauseAt} to the socket
    under C{transport} (TLS-wrapped or not).

    @return: C{pauseAt}, or 0 if there is no socket underneath: how many
        bytes the transport may hold before it pauses its producer.
    """
    while transport is not None and not isinstance(transport, FileDescriptor):
        transport = getattr(transport, "transport", None)
    if transport is None:
        return 0
    transport.SEND_LIMIT = SEND_LIMIT
    transport.bufferSize = pauseAt
    return pauseAt


def describePeer(request: Request) -> str:
    """
    The subscriber's address for the log: C{host:port}, or C{unix}.
    """
    peer = request.getClientAddress()
    port = getattr(peer, "port", None)
    return f"{getattr(peer, 'host', 'unix')}:{port}" if port is not None else "unix"


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


@implementer(IPushProducer, ISubscriber)
class Subscription:
    """
    One subscriber: writes matching lines to its request while the client
    keeps up, and queues them while the transport is paused.

    The queue is bounded by C{maxLines} output lines and C{maxBytes} bytes
    (what the transport may hold before it pauses us is left out of that);
    on overflow the oldest lines go, and the count of what went is sent in
    one notice line before anything else once the client catches up.

    @ivar dropped: Lines dropped and not yet reported to the client.
    @ivar droppedTotal: Lines dropped since the subscription began.
    """

    def __init__(
        self,
        request: Request,
        filters: Filters,
        clock: IReactorTime,
        maxLines: int,
        maxBytes: int,
        notice: Callable[[str, int], bytes],
    ) -> None:
        self.filters = filters
        self._request = request
        self._clock = clock
        self._maxLines = maxLines
        self._maxBytes = maxBytes
        self._notice = notice
        self._paused = False
        self._queue: deque[tuple[bytes, int, bool]] = deque()
        self._queuedLines = 0
        self._queuedBytes = 0
        self.dropped = 0
        self.droppedTotal = 0

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
        transport = self._request.channel.transport
        if self._request.chunked and transport is not None:
            self._write = partial(_writeChunk, transport)  # type: ignore[method-assign]

    def _write(self, data: bytes) -> None:
        """
        Send C{data} as part of the response.
        """
        self._request.write(data)

    def deliver(self, data: bytes, lines: int, whole: bool) -> None:
        if not self._paused:
            self._write(data)
            return
        queue = self._queue
        if whole and len(data) < SMALL and queue and queue[-1][2] and len(queue[-1][0]) < SMALL:
            # Many small batches queue up behind a stalled subscriber: keep
            # them in fewer, larger segments.
            last, lastLines, _ = queue[-1]
            queue[-1] = (last + data, lastLines + lines, True)
        else:
            queue.append((data, lines, whole))
        self._queuedLines += lines
        self._queuedBytes += len(data)
        if self._queuedLines > self._maxLines or self._queuedBytes > self._maxBytes:
            self._trim()

    def _trim(self) -> None:
        """
        Drop the oldest queued lines until the queue is within its bounds,
        never splitting a multi-line record.
        """
        while self._queuedLines > self._maxLines or self._queuedBytes > self._maxBytes:
            data, lines, whole = self._queue[0]
            excessLines = self._queuedLines - self._maxLines
            excessBytes = self._queuedBytes - self._maxBytes
            if whole and excessLines < lines and excessBytes < len(data):
                # Keep the newest part of this segment: cut after the first
                # newline that removes enough lines and enough bytes.
                cut = len(data) - len(data.split(b"\n", excessLines)[-1]) if excessLines > 0 else 0
                if excessBytes > cut:
                    cut = data.index(b"\n", excessBytes - 1) + 1
                gone = data.count(b"\n", 0, cut)
                if cut < len(data):
                    self._queue[0] = (data[cut:], lines - gone, True)
                else:
                    self._queue.popleft()
            else:
                self._queue.popleft()
                cut, gone = len(data), lines
            self._queuedLines -= gone
            self._queuedBytes -= cut
            self.dropped += gone
            self.droppedTotal += gone

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if self.dropped:
            self._write(self._notice(formatEpoch(self._clock.seconds()), self.dropped))
            self.dropped = 0
        while self._queue and not self._paused:
            data, lines, whole = self._queue.popleft()
            self._queuedLines -= lines
            self._queuedBytes -= len(data)
            self._write(data)

    def stopProducing(self) -> None:
        self._queue.clear()
        self._queuedLines = self._queuedBytes = 0

    def abort(self) -> None:
        self.stopProducing()
        # A request whose connection is already gone has no channel.
        channel = self._request.channel
        if channel is not None and channel.transport is not None:
            channel.transport.abortConnection()  # type: ignore[attr-defined]

    def close(self) -> Deferred[object]:
        # Only live subscriptions are registered: one whose client went
        # away was unsubscribed when its request finished.
        if self._request.finished:
            return succeed(None)
        self.resumeProducing()
        transport = self._request.channel.transport
        assert transport is not None
        self._request.unregisterProducer()
        self._request.finish()
        transport.loseConnection()
        closed: Deferred[object] = Deferred()

        def check() -> None:
            if getattr(transport, "disconnected", True) or self._clock.seconds() > deadline:
                closed.callback(None)
            else:
                self._clock.callLater(0.05, check)

        deadline = self._clock.seconds() + CLOSE_TIMEOUT
        check()
        return closed


class SubscriberChannel(HTTPChannel):
    """
    An HTTP connection that, once its request has become a subscription,
    throws away whatever else the client sends.  Twisted's channel would
    buffer it and, past 16 KiB, stop reading the socket, and then never see
    the client go away.
    """

    streaming = False

    def startStreaming(self) -> None:
        """
        The request is now a subscription: keep reading, ignore the bytes.
        """
        self.streaming = True
        self._keepReading()

    def _keepReading(self) -> None:
        assert self.transport is not None
        self.transport.resumeProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if self.streaming:
            return
        super().dataReceived(data)
        if self.streaming:
            # The rest of the read that held the request was buffered, and
            # may have paused reading.
            self._keepReading()


class SubscriberSite(Site):
    """
    The subscriber port's site: a L{SubscribeResource} behind
    L{SubscriberChannel}s.
    """

    protocol = SubscriberChannel  # type: ignore[assignment]


class SubscribeResource(Resource):
    """
    Any path: C{GET /?app=RE&proc=RE&host=RE&log=RE} streams every matching
    line until the client goes away.  HEAD checks the filters and returns
    the headers only.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        broker: Broker,
        clock: IReactorTime,
        maxLines: int = 10000,
        maxBytes: int = 4 * 1024 * 1024,
    ) -> None:
        super().__init__()
        self._broker = broker
        self._clock = clock
        self._maxLines = maxLines
        self._maxBytes = maxBytes
        #: The byte bound covers the queue and the transport's buffer both.
        #: The transport pauses a subscription at a quarter of it, up to
        #: PAUSE_AT; but a small bound gives up to half of it, up to 256 KiB,
        #: since pausing much earlier makes a subscriber that keeps up
        #: lose lines (see L{SEND_LIMIT}).
        self._pauseAt = max(min(PAUSE_AT, maxBytes // 4), min(256 * 1024, maxBytes // 2))
        host = serverHost()
        self._notice = lambda stamp, dropped: dropNotice(stamp, host, dropped)

    def _filters(self, request: Request) -> Filters | bytes:
        """
        Parse the filters of a request; on a bad one, set up a 400 response
        and return its body.
        """
        args = request.args or {}
        query = {}
        for name in FILTER_FIELDS:
            values = args.get(name.encode("ascii"))
            if values:
                query[name] = values[0].decode("utf-8", "replace")
        try:
            return Filters.fromQuery(query)
        except BadFilter as e:
            request.setResponseCode(400)
            request.setHeader(b"content-type", PLAIN_TEXT)
            return f"{e}\n".encode("utf-8", "replace")

    def _streamHeaders(self, request: Request) -> None:
        request.setHeader(b"content-type", PLAIN_TEXT)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")

    def render(self, request: Request) -> bytes | int:
        """
        GET and HEAD only: any other method is a 405 naming the allowed ones.
        """
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            request.setHeader(b"content-type", PLAIN_TEXT)
            return b"method not allowed: subscribe with GET\n"
        return super().render(request)

    def render_HEAD(self, request: Request) -> bytes:
        if isinstance(self._filters(request), Filters):
            self._streamHeaders(request)
        return b""

    def render_GET(self, request: Request) -> bytes | int:
        filters = self._filters(request)
        if isinstance(filters, bytes):
            return filters
        self._streamHeaders(request)
        channel = request.channel
        tuneSocket(channel.transport)
        held = widenWrites(channel.transport, self._pauseAt)
        # The request phase is over: a quiet stream is not an idle client.
        channel.setTimeout(None)
        if isinstance(channel, SubscriberChannel):
            channel.startStreaming()
        subscription = Subscription(
            request, filters, self._clock, self._maxLines, self._maxBytes - held, self._notice
        )
        request.registerProducer(subscription, True)
        request.write(b"")
        subscription.startStreaming()
        self._broker.subscribe(subscription)
        peer = describePeer(request)
        query = request.uri.partition(b"?")[2].decode("utf-8", "replace")
        self.log.info(
            "Subscriber {peer} subscribed to {query!r} ({count} subscribers)",
            peer=peer,
            query=query,
            count=self._broker.subscriberCount,
        )

        def finished(result: object) -> None:
            self._broker.unsubscribe(subscription)
            self.log.info(
                "Subscriber {peer} went away, {dropped} lines dropped ({count} subscribers)",
                peer=peer,
                dropped=subscription.droppedTotal,
                count=self._broker.subscriberCount,
            )

        request.notifyFinish().addBoth(finished)
        return NOT_DONE_YET
