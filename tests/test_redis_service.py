"""
Tests for L{logio.cluster.client}: the handshake, handing the connection
out, reconnecting with backoff, and stopping, on a fake clock and endpoint.
"""

from __future__ import annotations

import sys

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from logio.cluster.address import parseRedisURL
from logio.cluster.client import (
    ATTEMPT_TIMEOUT,
    RETRY_FIRST,
    RETRY_MAX,
    RedisService,
    handshake,
    retryDelay,
)
from logio.cluster.protocol import HiredisMissing, RedisError, RedisProtocol, encodeCommands


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """
    An endpoint whose connection attempts the test accepts or refuses.

    @ivar attempts: Each attempt's factory and the L{Deferred} it returned.
    """

    def __init__(self) -> None:
        self.attempts: list[tuple[IProtocolFactory, Deferred[IProtocol]]] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        attempt: Deferred[IProtocol] = Deferred()
        self.attempts.append((factory, attempt))
        return attempt

    def accept(self) -> tuple[RedisProtocol, StringTransport]:
        """
        Connect the last attempt to a L{StringTransport}.
        """
        factory, attempt = self.attempts[-1]
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7000))
        assert isinstance(protocol, RedisProtocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        attempt.callback(protocol)
        return protocol, transport

    def refuse(self) -> None:
        """
        Fail the last attempt as a refused connection.
        """
        self.attempts[-1][1].errback(ConnectionRefusedError())


class Harness:
    """
    A L{RedisService} on a fake clock and endpoint, and what it reported.
    """

    def __init__(self, url: str = "redis://127.0.0.1:7000") -> None:
        self.clock = MemoryReactorClock()
        self.endpoint = FakeEndpoint()
        self.connected: list[RedisProtocol] = []
        self.lost: list[Failure] = []
        self.failed: list[Failure] = []
        self.service = RedisService(
            parseRedisURL(url),
            self.clock,
            connected=self.connected.append,
            lost=self.lost.append,
            failed=self.failed.append,
            endpoint=self.endpoint,
        )
        self.service.startService()

    def ready(self) -> tuple[RedisProtocol, StringTransport]:
        """
        Accept the pending attempt and answer its C{PING}.
        """
        protocol, transport = self.endpoint.accept()
        assert transport.value() == encodeCommands([("PING",)])
        protocol.dataReceived(b"+PONG\r\n")
        assert self.connected[-1] is protocol
        return protocol, transport

    def retryIn(self) -> float:
        """
        Seconds until the one thing the clock holds, the next attempt.
        """
        [call] = self.clock.getDelayedCalls()
        return call.getTime() - self.clock.seconds()


class HandshakeTests(SynchronousTestCase):
    """
    A new connection is authenticated and put on its database before it is
    handed out.
    """

    def test_commands(self) -> None:
        """
        C{AUTH} with the user if there is one, and C{SELECT} unless the
        database is 0; C{PING} if neither is needed.
        """
        self.assertEqual(handshake(parseRedisURL("redis://h")), [("PING",)])
        self.assertEqual(handshake(parseRedisURL("redis://:pw@h")), [("AUTH", "pw")])
        self.assertEqual(
            handshake(parseRedisURL("redis://u:pw@h/2")), [("AUTH", "u", "pw"), ("SELECT", 2)]
        )

    def test_inOrder(self) -> None:
        """
        Each handshake command is sent once the one before succeeded; the
        connection is handed out after the last.
        """
        harness = Harness("redis://u:pw@127.0.0.1/2")
        waiting = harness.service.whenConnected()
        protocol, transport = harness.endpoint.accept()
        self.assertEqual(transport.value(), encodeCommands([("AUTH", "u", "pw")]))
        transport.clear()
        protocol.dataReceived(b"+OK\r\n")
        self.assertEqual(transport.value(), encodeCommands([("SELECT", 2)]))
        self.assertNoResult(waiting)
        self.assertEqual(harness.connected, [])
        protocol.dataReceived(b"+OK\r\n")
        self.assertIs(self.successResultOf(waiting), protocol)
        self.assertEqual(harness.connected, [protocol])
        self.assertIs(self.successResultOf(harness.service.whenConnected()), protocol)

    def test_wrongPassword(self) -> None:
        """
        A refused C{AUTH} is reported with the server's message; the
        connection is closed, nothing is handed out, and the service tries
        again later.
        """
        harness = Harness("redis://:bad@127.0.0.1/2")
        waiting = harness.service.whenConnected()
        protocol, transport = harness.endpoint.accept()
        protocol.dataReceived(b"-WRONGPASS invalid username-password pair\r\n")
        [failure] = harness.failed
        self.assertTrue(failure.check(RedisError))
        self.assertIn("WRONGPASS", failure.getErrorMessage())
        self.assertTrue(transport.disconnected)
        self.assertNotIn(b"SELECT", transport.value())
        self.assertNoResult(waiting)
        self.assertEqual(harness.connected, [])
        self.assertAlmostEqual(harness.retryIn(), retryDelay(1))

    def test_timeout(self) -> None:
        """
        A server that does not answer the handshake in time fails the
        attempt, and the connection is closed.
        """
        harness = Harness("redis://:pw@127.0.0.1")
        _, transport = harness.endpoint.accept()
        harness.clock.advance(ATTEMPT_TIMEOUT - 0.5)
        self.assertEqual(harness.failed, [])
        harness.clock.advance(0.5)
        [failure] = harness.failed
        self.assertTrue(failure.check(TimeoutError))
        self.assertTrue(transport.disconnected)

    def test_defaultEndpoint(self) -> None:
        """
        Without an endpoint given, the service connects over TCP to the
        URL's host and port.
        """
        reactor = MemoryReactorClock()
        service = RedisService(parseRedisURL("redis://127.0.0.1:7123"), reactor)
        service.startService()
        self.assertEqual([client[:2] for client in reactor.tcpClients], [("127.0.0.1", 7123)])

    def test_hiredisMissing(self) -> None:
        """
        Without hiredis the service is not built, and the error says how to
        install it.
        """
        saved = sys.modules["hiredis"]
        sys.modules["hiredis"] = None  # type: ignore[assignment]
        self.addCleanup(sys.modules.__setitem__, "hiredis", saved)
        with self.assertRaises(HiredisMissing) as raised:
            RedisService(parseRedisURL("redis://h"), MemoryReactorClock())
        self.assertIn("pip install 'logio[cluster]'", str(raised.exception))


class ReconnectTests(SynchronousTestCase):
    """
    Failed attempts are retried later and later; a lost connection is
    reported once and replaced.
    """

    def test_backoff(self) -> None:
        """
        The wait after each failed attempt in a row doubles from twice
        L{RETRY_FIRST} up to L{RETRY_MAX}; each failure is reported.
        """
        harness = Harness()
        waits = []
        for attempt in range(1, 10):
            self.assertEqual(len(harness.endpoint.attempts), attempt)
            harness.endpoint.refuse()
            waits.append(harness.retryIn())
            harness.clock.advance(waits[-1] - 0.001)
            self.assertEqual(len(harness.endpoint.attempts), attempt)
            harness.clock.advance(harness.retryIn())
        self.assertEqual(
            [round(wait, 6) for wait in waits], [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0]
        )
        self.assertEqual((RETRY_FIRST, RETRY_MAX), (0.1, 5.0))
        self.assertEqual(len(harness.failed), 9)
        self.assertTrue(all(failure.check(ConnectionRefusedError) for failure in harness.failed))
        harness.ready()
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_lost(self) -> None:
        """
        A lost connection is reported once, however many attempts fail
        after it; the next connection is reported and handed out, and the
        backoff starts over.
        """
        harness = Harness()
        first, _ = harness.ready()
        first.connectionLost(Failure(ConnectionLost("reset")))
        [reason] = harness.lost
        self.assertTrue(reason.check(ConnectionLost))
        waiting = harness.service.whenConnected()
        self.assertAlmostEqual(harness.retryIn(), RETRY_FIRST)
        harness.clock.advance(RETRY_FIRST)
        for _ in range(3):
            harness.endpoint.refuse()
            harness.clock.advance(harness.retryIn())
        self.assertNoResult(waiting)
        second, _ = harness.ready()
        self.assertIs(self.successResultOf(waiting), second)
        self.assertEqual(harness.connected, [first, second])
        self.assertEqual((len(harness.lost), len(harness.failed)), (1, 3))
        second.connectionLost(Failure(ConnectionDone()))
        self.assertAlmostEqual(harness.retryIn(), RETRY_FIRST)

    def test_callbackRaises(self) -> None:
        """
        A callback that raises is logged; the service goes on reconnecting.
        """
        harness = Harness()
        harness.service._lost = lambda reason: 1 / 0
        protocol, _ = harness.ready()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        harness.clock.advance(harness.retryIn())
        self.assertEqual(len(harness.endpoint.attempts), 2)


class StopTests(SynchronousTestCase):
    """
    Stopping closes the connection and ends the attempts, reporting no loss.
    """

    def test_connected(self) -> None:
        """
        Stopping closes the connection; the L{Deferred} it returns fires when
        it is closed; no loss is reported and nothing is retried.
        """
        harness = Harness()
        protocol, transport = harness.ready()
        stopped = harness.service.stopService()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(stopped)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stopped)
        self.assertEqual((harness.lost, harness.clock.getDelayedCalls()), ([], []))

    def test_waitingForRetry(self) -> None:
        """
        Stopping between attempts cancels the next one and fails those
        waiting for a connection.
        """
        harness = Harness()
        waiting = harness.service.whenConnected()
        harness.endpoint.refuse()
        self.successResultOf(harness.service.stopService())
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    def test_duringHandshake(self) -> None:
        """
        Stopping during the handshake aborts the connection and reports no
        failure; the L{Deferred} fires once the connection is closed.
        """
        harness = Harness("redis://:pw@127.0.0.1")
        protocol, transport = harness.endpoint.accept()
        stopped = harness.service.stopService()
        self.assertTrue(transport.disconnected)
        self.assertNoResult(stopped)
        protocol.connectionLost(Failure(ConnectionLost()))
        self.successResultOf(stopped)
        self.assertEqual((harness.failed, harness.clock.getDelayedCalls()), ([], []))

    def test_startBeforeClosed(self) -> None:
        """
        Started again before the old connection has closed, the service
        makes a new one; the stop's L{Deferred} fires when the old one
        closes, which is not reported as a loss.
        """
        harness = Harness()
        old, _ = harness.ready()
        stopped = harness.service.stopService()
        harness.service.startService()
        new, _ = harness.ready()
        self.assertNoResult(stopped)
        old.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stopped)
        self.assertEqual(harness.lost, [])
        self.assertIs(self.successResultOf(harness.service.whenConnected()), new)
