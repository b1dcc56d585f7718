# -*- test-case-name: tests.test_redis_service -*-
"""
A connection to Redis kept up: connect (TCP or TLS), authenticate and
select the database, hand the connection out, and after a failed attempt or
a lost connection connect again, waiting longer after each failure.

A command that blocks (C{XREAD BLOCK}) holds its connection until it
returns, so what blocks gets a L{RedisService} of its own.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from logio.cluster.address import RedisAddress, clientTLSOptions
from logio.cluster.protocol import Argument, RedisProtocol, requireHiredis
from logio.net import tuneSocket

#: Seconds an attempt may take, from connecting to the reply to the last
#: command of the handshake, before it counts as failed.
ATTEMPT_TIMEOUT = 10.0

#: Bytes one read of a connection to Redis takes at most.
READ_SIZE = 1 << 20

#: Seconds to wait before connecting again after a working connection is
#: lost; doubled after each failed attempt, up to L{RETRY_MAX}.
RETRY_FIRST = 0.1
RETRY_MAX = 5.0


def retryDelay(failures: int) -> float:
    """
    Seconds to wait before the next attempt to connect.

    @param failures: Attempts that failed in a row (0 when a working
        connection was just lost).
    """
    return min(RETRY_MAX, RETRY_FIRST * 2.0 ** min(failures, 32))


def redisEndpoint(reactor: Any, address: RedisAddress) -> IStreamClientEndpoint:
    """
    The endpoint that connects to C{address}: TCP, or TLS checking the
    server's certificate for C{address.host}.

    @raise ValueError: The CA file cannot be used (see L{clientTLSOptions}).
    """
    endpoint = HostnameEndpoint(reactor, address.host, address.port)
    if address.tls:
        return wrapClientTLS(clientTLSOptions(address), endpoint)
    return endpoint


def handshake(address: RedisAddress) -> list[Sequence[Argument]]:
    """
    The commands that prepare a new connection to C{address}: C{AUTH} if it
    has a password, C{SELECT} unless its database is 0, or else C{PING}.
    A connection is handed out only once the server has answered (a TLS
    connection is made before the certificates are checked).
    """
    commands: list[Sequence[Argument]] = []
    if address.password is not None:
        if address.username is None:
            commands.append(("AUTH", address.password))
        else:
            commands.append(("AUTH", address.username, address.password))
    if address.db:
        commands.append(("SELECT", address.db))
    return commands or [("PING",)]


class _TunedRedisProtocol(RedisProtocol):
    """
    A L{RedisProtocol} with TCP keepalive (a Redis host that vanished is
    noticed) and no Nagle delay (a pipeline goes out at once).
    """

    def connectionMade(self) -> None:
        tuneSocket(self.transport)
        # Replies of many entries are megabytes: read them in big pieces,
        # not one reactor turn per 64 KiB.
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = READ_SIZE


def _ignore(argument: object) -> None:
    """
    A callback for what nobody asked to hear about.
    """


class RedisService(Service):
    """
    Keeps one prepared connection to a Redis server while running.

    @ivar address: The server.
    """

    log = Logger()

    def __init__(
        self,
        address: RedisAddress,
        reactor: IReactorTime,
        connected: Callable[[RedisProtocol], object] = _ignore,
        lost: Callable[[Failure], object] = _ignore,
        failed: Callable[[Failure], object] = _ignore,
        retryDelay: Callable[[int], float] = retryDelay,
        endpoint: IStreamClientEndpoint | None = None,
    ) -> None:
        """
        @param address: The server, credentials and database.
        @param reactor: What connects (TCP) and keeps time.
        @param connected: Called with each new connection once it is
            authenticated and on the right database.
        @param lost: Called with the reason when such a connection ends,
            unless the service is stopping.
        @param failed: Called with the reason when an attempt to connect
            fails (refused, timed out, the certificate or the password
            rejected); attempts go on.
        @param retryDelay: Seconds to wait before the next attempt, given
            the failed attempts in a row.
        @param endpoint: What connects to the server (a UNIX socket, say);
            by default L{redisEndpoint}.

        @raise HiredisMissing: C{hiredis} is not installed.
        @raise ValueError: The CA file cannot be used.
        """
        requireHiredis()
        self.address = address
        self._endpoint = redisEndpoint(reactor, address) if endpoint is None else endpoint
        self._handshake = handshake(address)
        self._clock = reactor
        self._connected = connected
        self._lost = lost
        self._failed = failed
        self._retryDelay = retryDelay
        self._failures = 0
        self._attempt: Deferred[None] | None = None
        self._retry: IDelayedCall | None = None
        self._current: RedisProtocol | None = None
        self._ready = False
        self._waiting: list[Deferred[RedisProtocol]] = []
        self._closing: list[tuple[RedisProtocol, Deferred[None]]] = []

    def whenConnected(self) -> Deferred[RedisProtocol]:
        """
        The prepared connection, now or when there is one.

        @return: A L{Deferred} firing with a L{RedisProtocol}, or failing
            with L{CancelledError} if the service stops first.
        """
        if self._ready and self._current is not None:
            return succeed(self._current)
        waiting: Deferred[RedisProtocol] = Deferred()
        self._waiting.append(waiting)
        return waiting

    def startService(self) -> None:
        """
        Start connecting.
        """
        super().startService()
        self._connect()

    def stopService(self) -> Deferred[None]:
        """
        Stop connecting, and close the connection.

        @return: A L{Deferred} that fires once the connection is closed.
        """
        super().stopService()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._attempt is not None:
            self._attempt.cancel()
        waiting, self._waiting = self._waiting, []
        for each in waiting:
            each.errback(CancelledError("the Redis client stopped"))
        if self._current is None:
            return succeed(None)
        closed: Deferred[None] = Deferred()
        self._closing.append((self._current, closed))
        self._current.transport.loseConnection()
        return closed

    def _connect(self) -> None:
        """
        Connect and send the handshake.
        """
        self._retry = None
        factory = Factory.forProtocol(_TunedRedisProtocol)
        attempt: Deferred[Any] = self._endpoint.connect(factory)
        attempt.addCallback(self._prepare)
        attempt.addTimeout(ATTEMPT_TIMEOUT, self._clock)
        attempt.addCallbacks(self._prepared, self._attemptFailed)
        self._attempt = attempt

    def _prepare(self, protocol: RedisProtocol) -> Deferred[RedisProtocol]:
        """
        Send the handshake commands one after the other, each once the one
        before has succeeded.
        """
        self._current = protocol
        protocol.lostCallback = lambda reason: self._connectionLost(protocol, reason)
        prepared: Deferred[Any] = succeed(None)
        for command in self._handshake:
            prepared.addCallback(lambda _, command: protocol.execute(*command), command)
        return prepared.addCallback(lambda _: protocol)

    def _prepared(self, protocol: RedisProtocol) -> None:
        """
        Hand the connection out.
        """
        self._attempt = None
        self._failures = 0
        self._ready = True
        waiting, self._waiting = self._waiting, []
        for each in waiting:
            each.callback(protocol)
        self._tell(self._connected, protocol)

    def _attemptFailed(self, reason: Failure) -> None:
        """
        Close a connection the handshake failed on, and try again later.
        """
        self._attempt = None
        if self._current is not None:
            self._current.transport.abortConnection()
        if not self.running:
            return
        self._failures += 1
        self._schedule()
        self._tell(self._failed, reason)

    def _connectionLost(self, protocol: RedisProtocol, reason: Failure) -> None:
        """
        A connection ended: tell those waiting for it to close; if it was
        the prepared one and the service is running, say so and connect
        again.
        """
        closed = [each for closing, each in self._closing if closing is protocol]
        self._closing = [entry for entry in self._closing if entry[0] is not protocol]
        for each in closed:
            each.callback(None)
        if protocol is not self._current:
            return
        self._current = None
        wasReady, self._ready = self._ready, False
        if wasReady and self.running:
            self._schedule()
            self._tell(self._lost, reason)

    def _schedule(self) -> None:
        """
        Connect again after the delay for the failures so far.
        """
        delay = self._retryDelay(self._failures)
        self._retry = self._clock.callLater(delay, self._connect)

    def _tell(self, callback: Callable[[Any], object], argument: object) -> None:
        """
        Call one of the callbacks given to this service; log what it raises.
        """
        try:
            callback(argument)
        except Exception:
            self.log.failure(
                "A Redis client callback failed ({address})", address=self.address.describe()
            )
