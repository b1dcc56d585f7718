"""
The publisher port: one small protocol sniffs the first byte of a connection
and hands it to the parser of the right wire protocol.

  - C{{} starts the seed JSON stream of the original Go client
    (L{logio.publish.seed});
  - anything else starts plain text lines (L{logio.publish.text}).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.interfaces import IProtocol, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from logio.interfaces import IBroker
from logio.net import tuneSocket
from logio.publish.seed import SeedProtocol
from logio.publish.text import TextProtocol
from logio.topic import StampParser

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"


class PublisherProtocol(Protocol):
    """
    Skip a UTF-8 byte order mark and leading whitespace, then choose the
    wire protocol from the first byte and hand the connection to it.
    """

    def __init__(self, factory: PublisherFactory) -> None:
        self._factory = factory
        self._pending = b""
        self._inner: Optional[IProtocol] = None

    def connectionMade(self) -> None:
        tuneSocket(self.transport)
        self._factory.broker.stats.publishers += 1

    def dataReceived(self, data: bytes) -> None:
        data = (self._pending + data).lstrip(_WHITESPACE)
        if data.startswith(_BOM):
            data = data[len(_BOM) :].lstrip(_WHITESPACE)
        if not data or (len(data) < len(_BOM) and _BOM.startswith(data)):
            self._pending = data
            return
        self._pending = b""
        inner = self._factory.parserFor(data[:1])
        self._inner = inner
        assert self.transport is not None
        inner.makeConnection(self.transport)
        # From now on the transport's calls go straight to the parser.
        self.dataReceived = inner.dataReceived  # type: ignore[method-assign]
        inner.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._factory.broker.stats.publishers -= 1
        if self._inner is not None:
            self._inner.connectionLost(reason)


class PublisherFactory(Factory):
    """
    Build publisher protocols that feed C{broker}.

    @ivar maxLine: The longest line or JSON value accepted, in bytes.
    """

    def __init__(self, broker: IBroker, clock: IReactorTime, maxLine: int = 65536) -> None:
        self.broker = broker
        self.clock = clock
        self.maxLine = maxLine
        self.stamps = StampParser()

    def buildProtocol(self, addr: object) -> PublisherProtocol:
        return PublisherProtocol(self)

    def parserFor(self, first: bytes) -> IProtocol:
        """
        The parser for a stream that starts with the byte C{first}.
        """
        if first == b"{":
            return SeedProtocol(self.broker, self.clock, self.maxLine, self.stamps)
        return TextProtocol(self.broker, self.clock, self.maxLine)
