"""
Tests for L{logio.net}: socket options and address formatting.
"""

from __future__ import annotations

import socket

from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from logio.net import (
    KEEPALIVE,
    PAUSE_AT,
    SEND_LIMIT,
    describeAddress,
    describePeer,
    isLocal,
    peerHost,
    tuneSocket,
    widenWrites,
)
from tests.support.fakes import TCPTransport


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
