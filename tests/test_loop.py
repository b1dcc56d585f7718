"""
Tests for L{logio.server.loop}: the reactor C{twistd logio} runs on.
"""

from __future__ import annotations

import socket

from twisted.internet.interfaces import IReadDescriptor
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface import implementer

from tests.support.server import Server
from tests.support.waiting import waitFor

try:
    from logio.server.loop import LeanEPollReactor
except ImportError:
    LeanEPollReactor = None  # type: ignore[assignment,misc]


@implementer(IReadDescriptor)
class Reader:
    """
    One end of a socket pair, read when the reactor finds it ready.

    @ivar read: What was read.
    @ivar lost: Why its connection was lost, once it was.
    """

    def __init__(self, sock: socket.socket, fails: bool = False) -> None:
        self.sock = sock
        self.fails = fails
        self.read = b""
        self.lost: Failure | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "Reader"

    def doRead(self) -> None:
        if self.fails:
            raise RuntimeError("doRead broke")
        self.read += self.sock.recv(100)

    def connectionLost(self, reason: Failure) -> None:
        self.lost = reason
        if self.fails:
            raise RuntimeError("connectionLost broke too")


class LeanEPollReactorTests(SynchronousTestCase):
    """
    The lean reactor serves ready sockets as Twisted's epoll reactor does.
    """

    def setUp(self) -> None:
        if LeanEPollReactor is None:
            raise SkipTest("no epoll here")
        self.reactor = LeanEPollReactor()
        self.addCleanup(self.reactor._poller.close)

    def pair(self, fails: bool = False) -> tuple[Reader, socket.socket]:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        reader = Reader(ours, fails)
        self.reactor.addReader(reader)
        self.addCleanup(self.reactor.removeReader, reader)
        return reader, theirs

    def test_readsWhatIsReady(self) -> None:
        """
        A socket with data waiting is read; one without is not.
        """
        ready, writer = self.pair()
        idle, _ = self.pair()
        writer.sendall(b"hello")
        waitFor(lambda: self.reactor.doIteration(0.1) or ready.read == b"hello", what="a read")
        self.assertEqual(idle.read, b"")

    def test_brokenSelectableLoggedOthersServed(self) -> None:
        """
        A selectable whose C{doRead} and C{connectionLost} both raise is
        disconnected and logged; another ready in the same poll is still
        read, and the loop goes on.
        """
        broken, toBroken = self.pair(fails=True)
        fine, toFine = self.pair()
        toBroken.sendall(b"x")
        toFine.sendall(b"y")
        waitFor(
            lambda: self.reactor.doIteration(0.1) or (fine.read == b"y" and broken.lost),
            what="both served",
        )
        assert broken.lost is not None
        self.assertIsInstance(broken.lost.value, RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        toFine.sendall(b"z")
        waitFor(lambda: self.reactor.doIteration(0.1) or fine.read == b"yz", what="a later read")

    def test_closedBeforeItsTurnSkipped(self) -> None:
        """
        A selectable removed by serving another of the same poll is not
        served.
        """
        first, toFirst = self.pair()
        second, toSecond = self.pair()
        readers = {first, second}

        def removeOther(reader: Reader) -> None:
            reader.read += reader.sock.recv(100)
            for other in readers - {reader}:
                self.reactor.removeReader(other)

        for reader in readers:
            reader.doRead = lambda reader=reader: removeOther(reader)  # type: ignore[method-assign]
        toFirst.sendall(b"1")
        toSecond.sendall(b"2")
        waitFor(
            lambda: self.reactor.doIteration(0.1) or first.read or second.read,
            what="a read",
        )
        self.assertEqual(sorted([first.read, second.read])[0], b"")


class TurnEndTests(SynchronousTestCase):
    """
    L{LeanEPollReactor.callAtTurnEnd} runs calls when a turn of the loop
    ends.
    """

    def setUp(self) -> None:
        if LeanEPollReactor is None:
            raise SkipTest("no epoll here")
        self.reactor = LeanEPollReactor()
        self.addCleanup(self.reactor._poller.close)
        self.events: list[str] = []
        ours, self.theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(self.theirs.close)
        self.reader = Reader(ours)
        self.reader.doRead = self.read  # type: ignore[method-assign]
        self.reactor.addReader(self.reader)
        self.addCleanup(self.reactor.removeReader, self.reader)

    def read(self) -> None:
        self.events.append("read " + self.reader.sock.recv(100).decode())
        self.reactor.callAtTurnEnd(lambda: self.events.append("end"))

    def test_afterTheReadySockets(self) -> None:
        """
        Asked while the poll's ready sockets are served, a call runs once
        they all are, within the same iteration.
        """
        self.theirs.sendall(b"a")
        waitFor(lambda: self.reactor.doIteration(0.1) or self.events, what="a read")
        self.assertEqual(self.events, ["read a", "end"])

    def test_beforeTheWait(self) -> None:
        """
        Asked outside a poll (by a timed call), a call runs before the loop
        waits: here it makes the socket ready, and the same iteration reads
        it rather than waiting out its timeout.
        """

        def send() -> None:
            self.events.append("send")
            self.theirs.sendall(b"b")

        self.reactor.callAtTurnEnd(send)
        self.reactor.doIteration(60)
        self.assertEqual(self.events, ["send", "read b", "end"])

    def test_failureLogged(self) -> None:
        """
        A call that raises is logged, and the others still run.
        """
        self.reactor.callAtTurnEnd(lambda: 1 // 0)
        self.reactor.callAtTurnEnd(lambda: self.events.append("second"))
        self.reactor.doIteration(0)
        self.assertEqual(self.events, ["second"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class InstalledTests(SynchronousTestCase):
    """
    C{twistd logio} runs on the lean reactor, unless told otherwise.
    """

    def test_default(self) -> None:
        """
        Without C{--reactor}, the server's reactor is the lean one.
        """
        if LeanEPollReactor is None:
            raise SkipTest("no epoll here")
        server = Server(self)
        self.assertIn("reactor class: logio.server.loop.LeanEPollReactor", server.log())

    def test_chosen(self) -> None:
        """
        C{twistd --reactor=poll logio} runs on the reactor asked for.
        """
        server = Server(self, twistdOptions=["--reactor=poll"])
        self.assertIn("reactor class: twisted.internet.pollreactor.PollReactor", server.log())
