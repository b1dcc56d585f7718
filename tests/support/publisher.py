"""
A publisher-port protocol over a L{StringTransport}, with a fake broker and a
fixed clock: the sniffing protocol of the publisher port, or the parser it
picks.
"""

from __future__ import annotations

from typing import Any, Union

from attrs import define
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from logio.auth import Tokens
from logio.topic import Record, Topic
from tests.support.fakes import FakeBroker, publisherFactory

#: The fixed receive time of every test connection, and how it is output.
NOW = 1500000000.5
NOW_TS = "2017-07-14T02:40:00.500"
#: The address L{StringTransport} reports for its peer.
PEER = "192.168.1.1"


@define
class Connection:
    """
    One publisher connection over a L{StringTransport}.
    """

    protocol: Any
    broker: FakeBroker
    clock: Clock
    transport: StringTransport

    def feed(self, *chunks: bytes) -> Connection:
        """
        Deliver C{chunks} as separate reads.
        """
        for chunk in chunks:
            self.protocol.dataReceived(chunk)
        return self

    def close(self) -> Connection:
        """
        Tell the protocol the connection is gone.
        """
        self.protocol.connectionLost(connectionDone)
        return self

    def topics(self) -> list[Topic]:
        """
        The topic of every C{publish} call, in order.
        """
        return [topic for topic, _ in self.broker.published]

    def records(self) -> list[Record]:
        """
        All published records, concatenated.
        """
        return [record for _, records in self.broker.published for record in records]

    def outcome(self) -> tuple[set[Topic], list[Record], bytes, bool]:
        """
        Everything a publisher's stream caused, independent of how it was
        split into publish calls.
        """
        topics = set(self.topics())
        return topics, self.records(), self.transport.value(), self.transport.disconnecting


def connect(
    first: Union[bytes, None] = None,
    maxLine: int = 65536,
    transport: Union[StringTransport, None] = None,
    tokens: Union[Tokens, None] = None,
) -> Connection:
    """
    Connect a publisher over C{transport} (by default a L{StringTransport}
    with a TCP peer at L{PEER}): the sniffing protocol of the publisher
    port, or directly the parser L{PublisherFactory.parserFor} picks for
    C{first}.
    """
    broker = FakeBroker()
    clock = Clock()
    clock.advance(NOW)
    factory = publisherFactory(broker, clock, tokens, maxLine=maxLine)
    if first is None:
        protocol = factory.buildProtocol(IPv4Address("TCP", PEER, 54321))
    else:
        protocol = factory.parserFor(first)
    connection = Connection(protocol, broker, clock, transport or StringTransport())
    protocol.makeConnection(connection.transport)
    return connection
