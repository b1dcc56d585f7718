"""
End-to-end tests of L{logio.cluster.client} against a real C{redis-server}:
authentication, database selection, streams with a blocking read, a long
pipeline, reconnection across a server restart, and TLS.
"""

from __future__ import annotations

import os
import time
from typing import Any

from OpenSSL.SSL import Error as TLSError
from service_identity import VerificationError
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionClosed
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from logio.cluster.address import parseRedisURL
from logio.cluster.client import RedisService
from logio.cluster.protocol import RedisError, RedisProtocol
from tests.support.redis import RedisServer
from tests.support.waiting import TIMEOUT


class Recorder:
    """
    What a L{RedisService} reported, and L{Deferred}s for what it has yet to.

    @ivar events: The arguments of each callback, by its name.
    """

    def __init__(self) -> None:
        self.events: dict[str, list[Any]] = {"connected": [], "lost": [], "failed": []}
        self._waiting: list[tuple[str, int, Deferred[None]]] = []

    def record(self, kind: str, argument: object) -> None:
        """
        Note that C{kind} was reported with C{argument}.
        """
        self.events[kind].append(argument)
        for waiting in list(self._waiting):
            name, count, fired = waiting
            if name == kind and len(self.events[kind]) >= count:
                self._waiting.remove(waiting)
                fired.callback(None)

    def when(self, kind: str, count: int = 1) -> Deferred[None]:
        """
        A L{Deferred} that fires once C{kind} has been reported C{count}
        times, or fails after L{TIMEOUT} seconds.
        """
        fired: Deferred[None] = Deferred()
        if len(self.events[kind]) >= count:
            fired.callback(None)
        else:
            self._waiting.append((kind, count, fired))
        return fired.addTimeout(TIMEOUT, reactor)


class RedisTestCase(TestCase):
    """
    Helpers: a started L{RedisService} per URL, stopped at the end.
    """

    def service(self, url: str, ca: str | None = None) -> tuple[RedisService, Recorder]:
        """
        A started L{RedisService} for C{url}, and what it reports.
        """
        recorder = Recorder()
        service = RedisService(
            parseRedisURL(url, ca=ca),
            reactor,
            connected=lambda protocol: recorder.record("connected", protocol),
            lost=lambda reason: recorder.record("lost", reason),
            failed=lambda reason: recorder.record("failed", reason),
        )
        service.startService()
        self.addCleanup(service.stopService)
        return service, recorder

    async def connect(self, url: str, ca: str | None = None) -> RedisProtocol:
        """
        A prepared connection to C{url}.
        """
        service, _ = self.service(url, ca)
        return await service.whenConnected().addTimeout(TIMEOUT, reactor)


class CommandTests(RedisTestCase):
    """
    Authentication, database selection and commands on a real server.
    """

    async def test_setGet(self) -> None:
        """
        With the right password, the connection is on the database the URL
        names, and a value set is read back.
        """
        server = RedisServer(self, password="right-pw")
        redis = await self.connect(server.url(db=2))
        self.assertEqual(await redis.execute("SET", "key", b"\x00value\xff"), b"OK")
        self.assertEqual(await redis.execute("GET", "key"), b"\x00value\xff")
        self.assertIn(b" db=2 ", await redis.execute("CLIENT", "INFO"))
        other = await self.connect(server.url(db=0))
        self.assertIsNone(await other.execute("GET", "key"))

    async def test_wrongPassword(self) -> None:
        """
        A wrong password fails each attempt with the server's C{WRONGPASS}
        error, and no connection is handed out.
        """
        server = RedisServer(self, password="right-pw")
        service, recorder = self.service(server.url(password="wrong-pw"))
        connected = service.whenConnected()
        await recorder.when("failed")
        failure = recorder.events["failed"][0]
        self.assertTrue(failure.check(RedisError))
        self.assertTrue(failure.getErrorMessage().startswith("WRONGPASS"))
        self.assertNoResult(connected)
        self.assertEqual(recorder.events["connected"], [])
        connected.addErrback(lambda _: None)

    async def test_noPassword(self) -> None:
        """
        Without a password for a server that wants one, each attempt fails
        with the server's C{NOAUTH} error.
        """
        server = RedisServer(self, password="right-pw")
        _, recorder = self.service(server.url(password=""))
        await recorder.when("failed")
        failure = recorder.events["failed"][0]
        self.assertTrue(failure.check(RedisError))
        self.assertTrue(failure.getErrorMessage().startswith("NOAUTH"))
        self.assertEqual(recorder.events["connected"], [])

    async def test_blockingRead(self) -> None:
        """
        An C{XREAD BLOCK} on a connection of its own waits until an entry is
        added on another, then returns it, binary value and all.
        """
        server = RedisServer(self)
        writer = await self.connect(server.url())
        reader = await self.connect(server.url())
        read = reader.execute("XREAD", "BLOCK", 0, "STREAMS", "records", "$")
        deadline = time.monotonic() + TIMEOUT
        while b"blocked_clients:1\r\n" not in await writer.execute("INFO", "clients"):
            self.assertLess(time.monotonic(), deadline, "the XREAD never blocked")
            await deferLater(reactor, 0.01, lambda: None)
        self.assertNoResult(read)
        blob = os.urandom(30000)
        added = await writer.execute("XADD", "records", "*", "topic", "web", "data", blob)
        self.assertEqual(await read, [[b"records", [[added, [b"topic", b"web", b"data", blob]]]]])

    async def test_pipeline(self) -> None:
        """
        10,000 commands sent in one write are answered in order.
        """
        server = RedisServer(self)
        redis = await self.connect(server.url())
        replies = redis.pipeline([("INCR", "counter")] * 10000)
        self.assertEqual([await reply for reply in replies], list(range(1, 10001)))


class RestartTests(RedisTestCase):
    """
    A server restart is one loss and one reconnection.
    """

    async def test_restart(self) -> None:
        """
        When the server stops, a command waiting for its reply fails and
        the loss is reported once; failed attempts follow; once the server
        is back on the same port the service connects again, reported
        once, and commands work.
        """
        server = RedisServer(self, password="pw")
        service, recorder = self.service(server.url(db=1))
        first = await service.whenConnected()
        waiting = first.execute("BLPOP", "nothing", 0)
        server.stop()
        with self.assertRaises(ConnectionClosed):
            await waiting
        await recorder.when("lost")
        await recorder.when("failed")
        server.start()
        await recorder.when("connected", 2)
        second = await service.whenConnected()
        self.assertIsNot(second, first)
        self.assertEqual(recorder.events["connected"], [first, second])
        self.assertEqual(len(recorder.events["lost"]), 1)
        self.assertEqual(await second.execute("SET", "key", "value"), b"OK")
        self.assertIn(b" db=1 ", await second.execute("CLIENT", "INFO"))


class TLSTests(RedisTestCase):
    """
    C{rediss://}: the server's certificate is checked, name and signer.
    """

    async def test_trusted(self) -> None:
        """
        A certificate for the host, signed by the CA file given, is
        accepted.
        """
        server = RedisServer(self, password="pw", tls=True)
        redis = await self.connect(server.url(db=3), ca=server.certificates["ca"])
        self.assertEqual(await redis.execute("SET", "key", "value"), b"OK")
        self.assertIn(b" db=3 ", await redis.execute("CLIENT", "INFO"))

    async def test_rejected(self) -> None:
        """
        A certificate for another name, or signed by a CA the client does
        not trust, fails the attempt with a TLS error.
        """
        server = RedisServer(self, tls=True)
        for url, ca, error in (
            (server.url(host="127.0.0.1"), server.certificates["ca"], VerificationError),
            (server.url(), None, TLSError),
        ):
            _, recorder = self.service(url, ca)
            await recorder.when("failed")
            failure: Failure = recorder.events["failed"][0]
            self.assertTrue(failure.check(error), failure)
            self.assertEqual(recorder.events["connected"], [])
