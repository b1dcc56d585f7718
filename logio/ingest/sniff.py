# -*- test-case-name: tests.test_publish -*-
"""
The publisher port: one small protocol sniffs the first byte of a connection
and hands it to the parser of the right wire protocol.

  - C{{} starts the seed JSON stream of the original Go client
    (L{logio.ingest.seed});
  - C{<} or a digit starts syslog, newline-framed or octet-counted
    (L{logio.ingest.syslog});
  - anything else starts plain text lines (L{logio.ingest.text});
  - but a stream that starts like an HTTP request is answered with an
    HTTP 400 and publishes nothing (a web page may make a browser send one
    to C{localhost}), and a TLS ClientHello is refused as such.

The factory bounds how many publishers may be connected and how long one
may take to send its topic, and stops reading them all at shutdown (see
L{logio.server.services.PublishersService}).
"""

from __future__ import annotations

from typing import Optional, Union, cast

from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from logio.auth import Tokens
from logio.ingest.base import SHUTTING_DOWN, refuse
from logio.ingest.seed import SeedProtocol
from logio.ingest.syslognet import SyslogProtocol
from logio.ingest.text import TextProtocol
from logio.interfaces import IBroker
from logio.net import PROTECTED, PROTECTED_MODE, isLocal, peerHost, tuneSocket
from logio.ports import SUBSCRIBE_PORT
from logio.refusals import Refusals
from logio.settings import Settings
from logio.topic import StampParser

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"

#: Refusal causes.
TOO_MANY = "too many publishers"
NO_TOPIC = "no topic in time"
HTTP = "HTTP on the publisher port"
TLS = "TLS on a plain port"

#: How HTTP requests start (RFC 9110 methods, and HTTP/2's preface).
_METHODS = tuple(
    method.encode() + b" "
    for method in "GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PRI".split()
)
#: The first byte of a TLS handshake record (a ClientHello).
_TLS_HANDSHAKE = b"\x16"

Parser = Union[SeedProtocol, SyslogProtocol, TextProtocol]


@implementer(IHalfCloseableProtocol)
class PublisherProtocol(Protocol):
    """
    Skip a UTF-8 byte order mark and leading whitespace, then choose the
    wire protocol from the first byte and hand the connection to it.

    A connection beyond the factory's C{maxPublishers} is refused at once;
    one that has not sent its topic within C{topicTimeout} seconds is
    refused then.
    """

    def __init__(self, factory: PublisherFactory) -> None:
        self._factory = factory
        self._pending = b""
        #: The wire protocol's parser, once the first byte chose it.
        self.parser: Optional[Parser] = None
        self._deadline: Optional[IDelayedCall] = None
        self._refused = False

    def connectionMade(self) -> None:
        factory = self._factory
        assert self.transport is not None
        if factory.protected and not isLocal(self.transport.getPeer()):
            self._refuse(PROTECTED, PROTECTED_MODE)
            return
        if len(factory.connections) >= factory.maxPublishers:
            self._refuse(f"too many publishers ({factory.maxPublishers})", TOO_MANY)
            return
        tuneSocket(self.transport)
        factory.connections.add(self)
        if factory.held:
            self.hold(True)
        factory.broker.stats.publishers += 1
        self._deadline = factory.clock.callLater(factory.topicTimeout, self._topicDeadline)

    def _refuse(self, message: str, cause: str) -> None:
        """
        Refuse the connection before a parser has it.
        """
        self._refused = True
        assert self.transport is not None
        refuse(self.transport, self._factory.refusals, message, cause)

    def _answerHTTP(self) -> None:
        """
        The stream is an HTTP request: answer it as HTTP would, so a person
        with a browser or curl learns which port this is.
        """
        self._refused = True
        assert self.transport is not None
        port = getattr(self.transport.getHost(), "port", None)
        here = f"logio's publisher port ({port})" if port else "logio's publisher port"
        body = (
            f"This is {here}: it takes seed JSON or text lines over TCP, not HTTP. "
            f"Subscribe with HTTP on the subscriber port ({SUBSCRIBE_PORT} by default).\n"
        ).encode()
        self._factory.refusals.refuse("publisher", HTTP, peerHost(self.transport))
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.loseConnection()

    def _topicDeadline(self) -> None:
        self._deadline = None
        message = f"no topic within {self._factory.topicTimeout:g} s"
        inner = self.parser
        if inner is None:
            self._refuse(message, NO_TOPIC)
        elif inner.topic is None and not (inner.failed or inner.stopped):
            inner.fail(message, NO_TOPIC)

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        data = (self._pending + data).lstrip(_WHITESPACE)
        if data.startswith(_BOM):
            data = data[len(_BOM) :].lstrip(_WHITESPACE)
        if (
            not data
            or (len(data) < len(_BOM) and _BOM.startswith(data))
            or any(len(data) < len(method) and method.startswith(data) for method in _METHODS)
        ):
            self._pending = data
            return
        self._pending = b""
        if data.startswith(_METHODS):
            self._answerHTTP()
            return
        if data.startswith(_TLS_HANDSHAKE):
            self._refuse(
                "this port speaks plain TCP, not TLS: publish with logio:// here, "
                "or give the server an ssl: endpoint for logios://",
                TLS,
            )
            return
        inner = self._factory.parserFor(data[:1])
        self.parser = inner
        assert self.transport is not None
        inner.makeConnection(self.transport)
        # From now on the transport's calls go straight to the parser.
        self.dataReceived = inner.dataReceived  # type: ignore[method-assign]
        inner.dataReceived(data)

    def readConnectionLost(self) -> None:
        if self.parser is not None:
            self.parser.readConnectionLost()
        else:
            assert self.transport is not None
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Nothing: the server half-closes a publisher's connection only to
        linger after refusing it (see L{Publisher.fail}).
        """

    def hold(self, held: bool) -> None:
        """
        Stop reading for a while, or go on (unless shutting down).
        """
        if self._refused or self.transport is None:
            return
        producer = cast(IPushProducer, self.transport)
        if held:
            producer.pauseProducing()
        else:
            producer.resumeProducing()

    def stopReading(self) -> None:
        """
        The server is shutting down: read no more, publish what was read,
        and close the connection.
        """
        assert self.transport is not None
        self._refused = True
        if self.parser is not None:
            self.parser.stopReading()
        else:
            cast(IPushProducer, self.transport).pauseProducing()
            self.transport.write(SHUTTING_DOWN)
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self in self._factory.connections:
            self._factory.connections.remove(self)
            self._factory.broker.stats.publishers -= 1
        if self.parser is not None:
            self.parser.connectionLost(reason)


class PublisherFactory(Factory):
    """
    Build publisher protocols that feed C{broker}.

    @ivar maxLine: The longest text line (bytes) or seed JSON value
        (characters) taken whole.
    @ivar maxPublishers: How many publishers may be connected at once.
    @ivar topicTimeout: Seconds a publisher has to send its topic.
    @ivar refusals: Where refused publishers are counted and logged.
    @ivar connections: The publisher connections open now (not counting
        those being refused).
    """

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        settings: Settings,
        refusals: Refusals,
        tokens: Optional[Tokens] = None,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.maxLine = settings.maxLine
        self.maxPublishers = settings.maxPublishers
        self.topicTimeout = settings.topicTimeout
        self.refusals = refusals
        #: Whether only this machine's peers may publish (no tokens, no
        #: C{--public}).
        self.protected = settings.protected
        self.stamps = StampParser()
        self.connections: set[PublisherProtocol] = set()
        #: Whether publishers are not read for now (see L{holdReading}).
        self.held = False
        self.tokens = tokens
        if tokens is not None:
            tokens.watch(self._tokensReloaded)

    def _tokensReloaded(self) -> None:
        """
        Refuse the publishers whose tokens may no longer publish to their
        topics.
        """
        for connection in list(self.connections):
            if connection.parser is not None:
                connection.parser.recheck()

    def holdReading(self, held: bool) -> None:
        """
        Stop reading every publisher connection (new ones too), or go on:
        a cluster's relay is behind, and TCP holds the publishers back
        meanwhile.
        """
        self.held = held
        for connection in list(self.connections):
            connection.hold(held)

    def buildProtocol(self, addr: object) -> PublisherProtocol:
        return PublisherProtocol(self)

    def parserFor(self, first: bytes) -> Parser:
        """
        The parser for a stream that starts with the byte C{first}.
        """
        if first == b"{":
            return SeedProtocol(
                self.broker, self.clock, self.maxLine, self.refusals, self.stamps, self.tokens
            )
        if first == b"<" or first.isdigit():
            return SyslogProtocol(
                self.broker, self.clock, self.maxLine, self.refusals, self.stamps, self.tokens
            )
        return TextProtocol(self.broker, self.clock, self.maxLine, self.refusals, self.tokens)
