"""
Tests for L{logio.net}: socket options and address formatting.
"""

from __future__ import annotations

import socket

from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Connection
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from logio.net import (
    KEEPALIVE,
    PAUSE_AT,
    SEND_LIMIT,
    bufferedBytes,
    describeAddress,
    describePeer,
    isLocal,
    peerHost,
    plainSocket,
    sendNow,
    tuneSocket,
    widenWrites,
)
from tests.support.fakes import TCPTransport
from tests.support.sockets import readAvailable


class WidenWritesTests(SynchronousTestCase):
    """
    Subscriber sockets send more per pass and pause later than Twisted's defaults.
    """

    def test_socket(self) -> None:
        """
        A socket transport gets L{SEND_LIMIT} and L{PAUSE_AT}.
        """
        transport = FileDescriptor()
        widenWrites(transport)
        self.assertEqual((transport.SEND_LIMIT, transport.bufferSize), (SEND_LIMIT, PAUSE_AT))
        self.assertGreater(SEND_LIMIT, FileDescriptor.SEND_LIMIT)
        self.assertGreater(PAUSE_AT, FileDescriptor.bufferSize)

    def test_wrapped(self) -> None:
        """
        Under a wrapper (TLS), the socket transport underneath is changed.
        """
        transport = FileDescriptor()
        wrapper = StringTransport()
        wrapper.transport = transport  # type: ignore[attr-defined]
        widenWrites(wrapper)
        self.assertEqual(transport.SEND_LIMIT, SEND_LIMIT)

    def test_notASocket(self) -> None:
        """
        A transport with no socket underneath is left alone.
        """
        transport = StringTransport()
        widenWrites(transport)
        self.assertFalse(hasattr(transport, "SEND_LIMIT"))


class AddressTests(SynchronousTestCase):
    """
    Addresses are formatted one way everywhere.
    """

    def test_describeAddress(self) -> None:
        """
        Listening addresses are logged as C{tcp host:port} or C{unix path}.
        """
        self.assertEqual(describeAddress(IPv4Address("TCP", "0.0.0.0", 7701)), "tcp 0.0.0.0:7701")
        self.assertEqual(describeAddress(UNIXAddress("/run/logio.sock")), "unix /run/logio.sock")

    def test_describePeer(self) -> None:
        """
        Peers are logged as C{host:port}, or C{unix}.
        """
        self.assertEqual(describePeer(IPv4Address("TCP", "10.0.0.1", 5000)), "10.0.0.1:5000")
        self.assertEqual(describePeer(UNIXAddress(None)), "unix")

    def test_peerHost(self) -> None:
        """
        A publisher's topic host is its IP, or C{unix}.
        """
        self.assertEqual(peerHost(StringTransport()), "192.168.1.1")
        self.assertEqual(peerHost(object()), "unix")


class TuneSocketTests(SynchronousTestCase):
    """
    Publisher and subscriber sockets are tuned to find dead peers.
    """

    def test_keepaliveTimes(self) -> None:
        """
        A TCP socket probes an idle peer after a minute, not two hours.
        """
        if not hasattr(socket, "TCP_KEEPIDLE"):
            raise SkipTest("no TCP_KEEPIDLE here")
        sock = socket.socket()
        self.addCleanup(sock.close)
        transport = TCPTransport()
        transport.getHandle = lambda: sock  # type: ignore[method-assign]
        tuneSocket(transport)
        self.assertEqual(transport.options, {"keepalive": True, "nodelay": True})
        self.assertEqual(
            [
                sock.getsockopt(socket.IPPROTO_TCP, option)
                for option in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)
            ],
            list(KEEPALIVE),
        )


class IsLocalTests(SynchronousTestCase):
    """
    L{isLocal}: which peers protected mode answers.
    """

    def test_addresses(self) -> None:
        """
        Loopback IPv4 and IPv6 addresses, IPv4 loopback mapped into IPv6
        and UNIX sockets are this machine's; anything else is not.
        """
        for host in ("127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"):
            self.assertTrue(isLocal(IPv4Address("TCP", host, 1)), host)
        self.assertTrue(isLocal(UNIXAddress(b"/run/logio.sock")))
        for host in ("10.1.2.3", "192.168.1.1", "0.0.0.0", "::ffff:10.0.0.1", "fe80::1%eth0", "x"):
            self.assertFalse(isLocal(IPv4Address("TCP", host, 1)), host)


class SendNowTests(SynchronousTestCase):
    """
    L{sendNow} writes to a plain socket at once while its transport holds
    nothing, and through the transport otherwise, never out of order.
    """

    def setUp(self) -> None:
        self.near, self.far = socket.socketpair()
        self.addCleanup(self.near.close)
        self.addCleanup(self.far.close)
        self.reactor = MemoryReactor()
        self.transport = Connection(self.near, Protocol(), reactor=self.reactor)
        self.transport.connected = 1
        self.far.setblocking(False)

    def received(self) -> bytes:
        """
        What the far end can read now.
        """
        return readAvailable(self.far)

    def test_plainSocket(self) -> None:
        """
        Only a reactor's plain connection qualifies: not a fake, not TLS.
        """
        self.assertTrue(plainSocket(self.transport))
        self.assertFalse(plainSocket(StringTransport()))
        self.transport.TLS = True
        self.assertFalse(plainSocket(self.transport))

    def test_sentAtOnce(self) -> None:
        """
        With nothing held, the parts go to the kernel in one call, and the
        reactor is not asked to watch the socket.
        """
        sendNow(self.transport, (b"2\r\n", b"hi", b"\r\n"))
        self.assertEqual(self.received(), b"2\r\nhi\r\n")
        self.assertEqual(bufferedBytes(self.transport), 0)
        self.assertEqual(self.reactor.getWriters(), [])

    def test_behindHeldWrites(self) -> None:
        """
        While the transport holds earlier writes, the parts queue behind
        them, so the far end reads everything in order.
        """
        self.transport.write(b"first ")
        sendNow(self.transport, (b"second",))
        self.assertEqual(self.received(), b"")
        self.assertEqual(bufferedBytes(self.transport), len(b"first second"))
        self.transport.doWrite()
        self.assertEqual(self.received(), b"first second")

    def test_restToTransport(self) -> None:
        """
        What the kernel does not take goes to the transport, which sends it
        when it can: the far end gets every byte, in order.
        """
        data = bytes(range(256)) * 16384
        sendNow(self.transport, (b"head", data, b"tail"))
        held = bufferedBytes(self.transport)
        self.assertGreater(held, 0)
        self.assertIn(self.transport, self.reactor.getWriters())
        received = self.received()
        self.assertEqual(len(received) + held, len(data) + 8)
        while bufferedBytes(self.transport):
            self.transport.doWrite()
            received += self.received()
        self.assertEqual(received, b"head" + data + b"tail")

    def test_errorLeftToTransport(self) -> None:
        """
        A socket that fails does not raise here: everything goes to the
        transport, whose next write meets the error and ends the
        connection as for any write.
        """
        self.far.close()
        sendNow(self.transport, (b"lost",))
        self.assertEqual(bufferedBytes(self.transport), 4)
        self.assertIsInstance(self.transport.doWrite(), Exception)
