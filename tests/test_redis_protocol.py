"""
Tests for L{logio.cluster.protocol}: commands encoded as RESP, replies
parsed by hiredis and matched to their commands in order, error replies,
and a lost connection.
"""

from __future__ import annotations

import sys

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from logio.cluster.protocol import (
    HiredisMissing,
    RedisError,
    RedisProtocol,
    encodeCommands,
    requireHiredis,
)
from tests.support.processes import runPython

#: An XREAD reply: one stream, two entries, the second with a binary value
#: holding CR LF and what looks like RESP.
XREAD_REPLY = (
    b"*1\r\n*2\r\n$7\r\nrecords\r\n*2\r\n"
    b"*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ntext\r\n$5\r\nhello\r\n"
    b"*2\r\n$3\r\n2-0\r\n*4\r\n$4\r\ntext\r\n$0\r\n\r\n$4\r\nblob\r\n$8\r\n\r\n*1\r\n\x00\xff\r\n"
)
XREAD_PARSED = [
    [
        b"records",
        [
            [b"1-0", [b"text", b"hello"]],
            [b"2-0", [b"text", b"", b"blob", b"\r\n*1\r\n\x00\xff"]],
        ],
    ]
]


def connected() -> tuple[RedisProtocol, StringTransport]:
    """
    A protocol connected to a L{StringTransport}.
    """
    protocol = RedisProtocol()
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


class EncodeTests(SynchronousTestCase):
    """
    Commands go out as RESP arrays of bulk strings.
    """

    def test_arguments(self) -> None:
        """
        Bytes go as they are, text as UTF-8 (its length in bytes), integers
        in decimal.
        """
        self.assertEqual(
            encodeCommands([("SET", b"k\r\n", "\u00e9t\u00e9", -12)]),
            b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$5\r\n\xc3\xa9t\xc3\xa9\r\n$3\r\n-12\r\n",
        )

    def test_severalCommands(self) -> None:
        """
        Several commands are encoded one after the other.
        """
        self.assertEqual(
            encodeCommands([("PING",), ("GET", "a")]),
            b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n",
        )

    def test_badArguments(self) -> None:
        """
        A float, a boolean or C{None} is refused, naming its type, as is an
        empty command.
        """
        for bad in (1.5, True, None):
            with self.assertRaises(TypeError) as raised:
                encodeCommands([("SET", "k", bad)])  # type: ignore[list-item]
            self.assertIn(type(bad).__name__, str(raised.exception))
        self.assertRaises(ValueError, encodeCommands, [()])


class CommandTests(SynchronousTestCase):
    """
    Commands are written at once and answered in the order they were sent.
    """

    def test_execute(self) -> None:
        """
        L{RedisProtocol.execute} writes the command and fires with its reply.
        """
        protocol, transport = connected()
        replied = protocol.execute("GET", "key")
        self.assertEqual(transport.value(), b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n")
        self.assertNoResult(replied)
        protocol.dataReceived(b"$5\r\nvalue\r\n")
        self.assertEqual(self.successResultOf(replied), b"value")

    def test_pipelineOneWrite(self) -> None:
        """
        L{RedisProtocol.pipeline} writes all its commands in one write.
        """
        protocol, transport = connected()
        writes: list[bytes] = []
        self.patch(transport, "write", writes.append)
        commands = [("INCR", "n")] * 1000
        replies = protocol.pipeline(commands)
        self.assertEqual(writes, [encodeCommands(commands)])
        self.assertEqual(len(replies), 1000)

    def test_fifo(self) -> None:
        """
        Replies fire the commands' L{Deferred}s in the order the commands
        were sent, with bytes, integers, lists and C{None} for a null.
        """
        protocol, _ = connected()
        replies = protocol.pipeline([("SET", "a", 1), ("INCR", "n"), ("GET", "x"), ("XREAD",)])
        replies.append(protocol.execute("XREAD", "BLOCK", 10))
        protocol.dataReceived(b"+OK\r\n:42\r\n$-1\r\n" + XREAD_REPLY + b"*-1\r\n")
        self.assertEqual(
            [self.successResultOf(each) for each in replies],
            [b"OK", 42, None, XREAD_PARSED, None],
        )

    def test_errorReply(self) -> None:
        """
        An error reply fails its command with a L{RedisError} carrying the
        server's message; the commands after it get their own replies.
        """
        protocol, _ = connected()
        first, second = protocol.pipeline([("EVALSHA", "abc", 0), ("PING",)])
        protocol.dataReceived(b"-NOSCRIPT No matching script.\r\n+PONG\r\n")
        error = self.failureResultOf(first, RedisError).value
        self.assertEqual(error.message, "NOSCRIPT No matching script.")
        self.assertEqual(str(error), "NOSCRIPT No matching script.")
        self.assertEqual(self.successResultOf(second), b"PONG")

    def test_errorInArray(self) -> None:
        """
        An error inside an array (as in an C{EXEC} reply) is left in the
        list as a L{RedisError}.
        """
        protocol, _ = connected()
        replied = protocol.execute("EXEC")
        protocol.dataReceived(b"*2\r\n:1\r\n-WRONGTYPE no\r\n")
        one, error = self.successResultOf(replied)
        self.assertEqual(one, 1)
        self.assertIsInstance(error, RedisError)

    def test_byteByByte(self) -> None:
        """
        Replies split anywhere, down to single bytes, are put back together;
        nothing fires before its reply is complete.
        """
        protocol, _ = connected()
        first, second = protocol.pipeline([("XREAD",), ("PING",)])
        data = XREAD_REPLY + b"+PONG\r\n"
        for index in range(len(XREAD_REPLY)):
            self.assertNoResult(first)
            protocol.dataReceived(data[index : index + 1])
        self.assertEqual(self.successResultOf(first), XREAD_PARSED)
        for index in range(len(XREAD_REPLY), len(data)):
            self.assertNoResult(second)
            protocol.dataReceived(data[index : index + 1])
        self.assertEqual(self.successResultOf(second), b"PONG")

    def test_cancelled(self) -> None:
        """
        A cancelled command's reply is dropped when it comes; the next reply
        goes to the next command.
        """
        protocol, _ = connected()
        first, second = protocol.pipeline([("GET", "a"), ("GET", "b")])
        first.cancel()
        self.failureResultOf(first)
        protocol.dataReceived(b"$1\r\na\r\n$1\r\nb\r\n")
        self.assertEqual(self.successResultOf(second), b"b")

    def test_badArgumentSendsNothing(self) -> None:
        """
        A pipeline with an argument that cannot be encoded sends nothing and
        waits for no reply.
        """
        protocol, transport = connected()
        self.assertRaises(TypeError, protocol.pipeline, [("PING",), ("GET", 1.5)])
        self.assertEqual(transport.value(), b"")
        replied = protocol.execute("PING")
        protocol.dataReceived(b"+PONG\r\n")
        self.assertEqual(self.successResultOf(replied), b"PONG")


class BrokenConnectionTests(SynchronousTestCase):
    """
    Commands fail when the connection ends or the server breaks the protocol.
    """

    def test_lostFailsWaiting(self) -> None:
        """
        Commands waiting for replies fail with the reason the connection
        ended; L{RedisProtocol.lostCallback} is told first.
        """
        protocol, _ = connected()
        answered, first, second = protocol.pipeline([("PING",), ("XREAD",), ("GET", "a")])
        protocol.dataReceived(b"+PONG\r\n")
        told: list[tuple[Failure, bool]] = []
        protocol.lostCallback = lambda reason: told.append((reason, first.called))
        protocol.connectionLost(Failure(ConnectionLost("reset")))
        self.assertEqual(self.successResultOf(answered), b"PONG")
        self.failureResultOf(first, ConnectionLost)
        self.failureResultOf(second, ConnectionLost)
        [(reason, firstCalled)] = told
        self.assertTrue(reason.check(ConnectionLost))
        self.assertFalse(firstCalled)

    def test_commandAfterLoss(self) -> None:
        """
        A command after the connection ended fails at once and writes
        nothing.
        """
        protocol, transport = connected()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(protocol.execute("PING"), ConnectionDone)
        self.assertEqual(transport.value(), b"")

    def test_notRESP(self) -> None:
        """
        Bytes that are not RESP abort the connection.
        """
        protocol, transport = connected()
        replied = protocol.execute("PING")
        protocol.dataReceived(b"?what\r\n")
        self.assertTrue(transport.disconnected)
        self.assertNoResult(replied)
        self.assertEqual(len(self.flushLoggedErrors()), 1)

    def test_unaskedReply(self) -> None:
        """
        A reply when no command is waiting aborts the connection.
        """
        protocol, transport = connected()
        protocol.dataReceived(b"+OK\r\n")
        self.assertTrue(transport.disconnected)


class HiredisMissingTests(SynchronousTestCase):
    """
    Without hiredis, logio imports; building a client says how to install it.
    """

    def test_requireHiredis(self) -> None:
        """
        L{requireHiredis} and L{RedisProtocol} raise an L{ImportError} whose
        message gives the install command.
        """
        saved = requireHiredis()
        sys.modules["hiredis"] = None  # type: ignore[assignment]
        self.addCleanup(sys.modules.__setitem__, "hiredis", saved)
        for make in (requireHiredis, RedisProtocol):
            with self.assertRaises(HiredisMissing) as raised:
                make()
            self.assertIsInstance(raised.exception, ImportError)
            self.assertIn("pip install 'logio[cluster]'", str(raised.exception))

    def test_importWithout(self) -> None:
        """
        logio and its Redis client modules import without hiredis.
        """
        result = runPython(
            "import sys\n"
            "sys.modules['hiredis'] = None\n"
            "import logio, logio.cluster.address, logio.cluster.client, logio.cluster.protocol\n"
            "print('imported')\n"
        )
        self.assertEqual((result.returncode, result.stdout), (0, b"imported\n"), result.stderr)
