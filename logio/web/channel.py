# -*- test-case-name: tests.test_web -*-
"""
The subscriber port's HTTP connections and requests: deadlines and bounds
on what a client sends, bodies kept in memory up to what their route
allows (or handed to HTTP ingest as they stream), a connection that reads
and discards once its request has become a stream, and an access log that
hides tokens.
"""

from __future__ import annotations

import re
from io import BytesIO
from typing import Any, Optional, Protocol, Sequence

from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel, combinedLogFormatter
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer, provider

from logio.http import Discard, Sink
from logio.net import (
    LINGER,
    PROTECTED,
    PROTECTED_MODE,
    describePeer,
    isLocal,
    peerGone,
    probePeer,
    socketOf,
)
from logio.ports import PUBLISH_PORT
from logio.refusals import Refusals

#: A token in a query string, for the log.
_TOKEN = re.compile(rb"([?&])token=[^&]*")

#: How soon after a streaming client closed its side the server looks
#: whether it is gone (the reset its probe draws is back by then), and how
#: often after that, while it still reads.
PEER_CHECK = 1.0
PEER_PROBES = 5.0
#: How long a client that sent requests may leave all of its answers
#: unread before it is let go.
UNREAD_DEADLINE = 60.0
#: How long a body larger than L{MAX_BODY} may take to arrive, once the
#: request's headers are in.
BODY_DEADLINE = 60.0
#: How long a client has to send a request line and its headers.
REQUEST_DEADLINE = 10.0
#: The largest request body read (in memory, never spooled to disk); a
#: larger one gets 413.
MAX_BODY = 64 * 1024


class Bodies(Protocol):
    """
    What decides, once a request's line and headers are read, where its
    body goes: the site's table of routes (L{logio.web.site.Routes}).
    """

    def bodyFor(
        self, request: SubscriberRequest, method: bytes, target: bytes
    ) -> tuple[Optional[Sink], Optional[int]]:
        """
        Where the body of C{request} for C{method} and C{target} goes (a
        sink, or L{None} for memory) and how many bytes it may hold
        (L{None}: any number).
        """


class BodyBudget:
    """
    The bound on what all request bodies hold together: those kept in
    memory, as they arrive, and the streaming ones (C{POST /publish}) at the
    most each may hold.

    @ivar held: Bytes held now.
    """

    def __init__(self, maxBytes: int) -> None:
        self.maxBytes = maxBytes
        self.held = 0

    def take(self, size: int) -> bool:
        """
        Hold C{size} more bytes, if the bound allows.
        """
        if self.held + size > self.maxBytes:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        """
        Let go of C{size} bytes.
        """
        self.held -= size


class SubscriberRequest(Request):
    """
    A request whose body is kept in memory up to what its route allows
    (see L{Bodies}) and refused beyond it, never written to a temporary
    file; or handed to a sink as it arrives.  Bodies count against the
    site's L{BodyBudget} until the request is over; one larger than
    L{MAX_BODY} must arrive within L{BODY_DEADLINE}.

    @ivar requestLine: The method and target of its request line.
    @ivar received: Whether the whole request, its body included, has
        arrived.
    """

    channel: SubscriberChannel
    site: SubscriberSite
    requestLine = (b"", b"")
    received = False
    _held = 0
    _budget: BodyBudget
    _bodyDeadline: Optional[IDelayedCall] = None

    content: Any

    def gotLength(self, length: Optional[int]) -> None:
        self._bodyLength = 0
        method, target = self.requestLine
        channel = self.channel
        self._budget = channel.site.budget
        # The request line is read, the body not yet.
        sink, self._maxBody = channel.site.bodies.bodyFor(self, method, target)
        self.notifyFinish().addBoth(self._release)
        if sink is not None:
            self.content = sink
            if not self._hold(sink.most):
                self.content = Discard()
            return
        if self._maxBody is not None and length is not None and length > self._maxBody:
            self.content = Discard()
            channel.refuse(413, b"Payload Too Large", self._tooLarge())
            return
        self.content = BytesIO()
        if self._maxBody is None or self._maxBody > MAX_BODY:
            self._bodyDeadline = channel.callLater(BODY_DEADLINE, self._bodyTooSlow)

    def _tooLarge(self) -> str:
        return f"a request body here may hold at most {self._maxBody} bytes"

    def _hold(self, size: int) -> bool:
        """
        Count C{size} more bytes against the site's budget, or refuse the
        request with a 503 if they do not fit.
        """
        if self._budget.take(size):
            self._held += size
            return True
        self.channel.refuse(
            503,
            b"Service Unavailable",
            "request bodies in flight hold as much as the server allows "
            f"({self._budget.maxBytes} bytes): try again later",
        )
        return False

    def _bodyTooSlow(self) -> None:
        self._bodyDeadline = None
        self.content = Discard()
        self.channel.refuse(
            408,
            b"Request Timeout",
            f"a request body of more than {MAX_BODY} bytes must arrive within {BODY_DEADLINE:g} s",
        )

    def handleContentChunk(self, data: bytes) -> None:
        self._bodyLength += len(data)
        if isinstance(self.content, Discard):
            return
        if self._maxBody is not None and self._bodyLength > self._maxBody:
            self.content = Discard()
            self.channel.refuse(413, b"Payload Too Large", self._tooLarge())
        elif isinstance(self.content, Sink) or self._hold(len(data)):
            self.content.write(data)
        else:
            self.content = Discard()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.received = True
        if self._bodyDeadline is not None and self._bodyDeadline.active():
            self._bodyDeadline.cancel()
        self._bodyDeadline = None
        super().requestReceived(command, path, version)

    def process(self) -> None:
        if not self.channel.refused:
            super().process()

    def _release(self, result: object) -> None:
        """
        The request is over, answered or cut short: let go of what its
        body held (the publications of a C{POST /publish} cut short, the
        memory of one read whole) and give its share of the budget back.
        """
        if self._bodyDeadline is not None and self._bodyDeadline.active():
            self._bodyDeadline.cancel()
        self._bodyDeadline = None
        content = getattr(self, "content", None)
        if content is not None:
            content.close()
        self._budget.give(self._held)
        self._held = 0


@implementer(IHalfCloseableProtocol)
class SubscriberChannel(HTTPChannel):
    """
    An HTTP connection with deadlines and bounds, which, once its request
    has become a subscription, throws away whatever else the client sends.
    Twisted's channel would buffer it and, past 16 KiB, stop reading the
    socket, and then never see the client go away.

    A request line and its headers must arrive within L{REQUEST_DEADLINE}
    (however slowly they trickle in), a body may not pass what its route
    allows, and a client that half-closes after its request still gets its
    response.  Pipelined requests wait while the answers before them are
    unsent (see L{pauseProducing}), and a stream whose client closed its
    side is watched until the client is gone (see L{_checkPeer}).

    @ivar refused: Whether the connection was answered with an error and is
        being closed; what else it sends is ignored.
    """

    site: SubscriberSite
    streaming = False
    refused = False
    _first = True
    _readClosed = False
    _deadline: Optional[IDelayedCall] = None
    _peerCheck: Optional[IDelayedCall] = None
    _unread: Optional[IDelayedCall] = None
    _probes = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.site.protected and not isLocal(self.getPeer()):
            self._logRefusal(PROTECTED_MODE, f"{describePeer(self.getPeer())}: {PROTECTED}")
            self.answer(403, PROTECTED)
            return
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
        Count and log a refusal in the site's refusals.
        """
        self.site.refusals.refuse("subscriber", cause, detail)

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
        # A client still sending would have the connection reset by a close
        # with its input unread, and lose the answer: stop writing, and
        # discard what comes until it closes, for a while at most.
        try:
            self.transport.loseWriteConnection()  # type: ignore[attr-defined]
        except (AttributeError, NotImplementedError):
            self.transport.loseConnection()
            return
        self.callLater(LINGER, self.transport.loseConnection)

    def pauseProducing(self) -> None:
        """
        The transport holds as much as it will of answers the client has
        not read: read no more from it, even in the middle of a request,
        and take no further request of those already read until they are
        sent, so pipelined requests cannot pile up answers or requests.  A
        stream goes on reading, to see its client go.
        """
        self.paused = True
        super().pauseProducing()
        if self.streaming or self.transport is None:
            return
        self.transport.pauseProducing()  # type: ignore[attr-defined]
        # The time it takes the client to read is not the time it takes
        # to send its next request, but it has a bound of its own.
        self._stopDeadline()
        if self._unread is None:
            self._unread = self.callLater(UNREAD_DEADLINE, self._notReading)

    def resumeProducing(self) -> None:
        """
        The answers are sent: go on with the requests already read.
        """
        super().resumeProducing()
        self.paused = False
        if self._unread is not None and self._unread.active():
            self._unread.cancel()
        self._unread = None
        if self.streaming or self.refused:
            return
        self.dataReceived(b"")
        if not (self.requests or self.refused or self.paused) and self._deadline is None:
            self._deadline = self.callLater(REQUEST_DEADLINE, self._tooSlow)

    def _notReading(self) -> None:
        """
        The client has read none of its answers for L{UNREAD_DEADLINE}
        seconds: let go of it.
        """
        self._unread = None
        self.refused = True
        self._logRefusal(
            "not reading its answers",
            f"{describePeer(self.getPeer())}: read none of its answers for {UNREAD_DEADLINE:g} s",
        )
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]

    def lineReceived(self, line: bytes) -> None:
        """
        Keep the request line of a new request on the request, for the
        body decision made before the request is complete.
        """
        count = len(self.requests)
        super().lineReceived(line)
        if len(self.requests) > count:
            parts = line.split(b" ")
            if len(parts) == 3:
                self.requests[-1].requestLine = (parts[0], parts[1])

    def allHeadersReceived(self) -> None:
        self._stopDeadline()
        super().allHeadersReceived()

    def requestDone(self, request: Request) -> None:
        super().requestDone(request)
        if self._readClosed and not self.streaming and self.transport is not None:
            self.transport.loseConnection()
        elif not (self.streaming or self.refused or self.paused) and self._deadline is None:
            # The next request of a persistent connection has its own deadline.
            self._deadline = self.callLater(REQUEST_DEADLINE, self._tooSlow)

    def readConnectionLost(self) -> None:
        """
        The client has sent all it will: answer what it asked, then close.
        A stream goes on, since a client that only half-closed still reads;
        whether the client is still there is checked from now on (see
        L{_checkPeer}).
        """
        self._readClosed = True
        if self.streaming:
            self._checkPeer()
        elif self.transport is not None and not (self.requests and self.requests[-1].received):
            # Nothing asked, or a request the client can no longer complete.
            self.transport.loseConnection()

    def _checkPeer(self) -> None:
        """
        Release the connection of a stream whose client closed its side if
        the client has gone (its socket is closed or reset), or probe it
        and look again soon: a quiet stream would otherwise only find out
        when it next writes.
        """
        self._peerCheck = None
        handle = socketOf(self.transport)
        if handle is None or self.transport is None:
            return
        if peerGone(handle):
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        probePeer(handle)
        self._probes += 1
        delay = PEER_CHECK if self._probes == 1 else PEER_PROBES
        self._peerCheck = self.callLater(delay, self._checkPeer)

    def writeConnectionLost(self) -> None:
        """
        The connection's writing side is closed: after an error answer it
        lingers (see L{answer}); otherwise the connection is over.
        """
        if self.transport is not None and not self.refused:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopDeadline()
        for call in (self._peerCheck, self._unread):
            if call is not None and call.active():
                call.cancel()
        self._peerCheck = self._unread = None
        super().connectionLost(reason)

    def startStreaming(self) -> None:
        """
        The request is now a stream: keep reading, ignore the bytes.
        """
        self.streaming = True
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
            first = data.lstrip(b"\r\n")[:1]
            if first in (b"{", b"<") or first.isdigit():
                # No HTTP request starts so: seed JSON or syslog, sent to
                # the wrong port.  Say so before more of it arrives.
                self._logRefusal("a publisher on the subscriber port", describePeer(self.getPeer()))
                self.answer(
                    400,
                    "this is logio's subscriber (HTTP) port: publishers connect to the "
                    f"publisher port ({PUBLISH_PORT} by default)",
                )
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
    The subscriber port's site: its resource behind L{SubscriberChannel}s.

    @ivar bodies: Where each request's body goes.
    @ivar refusals: Where the connections' refusals are counted and logged.
    @ivar budget: What the bodies of all requests may hold together.
    @ivar protected: Whether only this machine's peers are answered (no
        tokens, no C{--public}); others get a 403 at once.
    """

    protocol = SubscriberChannel  # type: ignore[assignment]
    requestFactory = SubscriberRequest

    def __init__(
        self,
        resource: Resource,
        bodies: Bodies,
        refusals: Refusals,
        budget: BodyBudget,
        protected: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("logFormatter", accessLogLine)
        super().__init__(resource, **kwargs)
        self.bodies = bodies
        self.refusals = refusals
        self.budget = budget
        self.protected = protected


def startStreaming(request: Request) -> None:
    """
    C{request} is now a stream: its connection reads no further requests.
    """
    channel = request.channel
    if isinstance(channel, SubscriberChannel):
        channel.startStreaming()
