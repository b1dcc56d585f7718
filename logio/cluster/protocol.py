# -*- test-case-name: tests.test_redis_protocol -*-
"""
The Redis protocol (RESP2) on Twisted: commands out as arrays of bulk
strings, replies parsed by C{hiredis} and handed to the L{Deferred} of each
command in the order the commands were sent.

C{hiredis} is an optional dependency (C{pip install 'logio[cluster]'}):
importing this module does not need it, building a protocol does.
"""

from __future__ import annotations

from collections import deque
from types import ModuleType
from typing import Any, Callable, Iterable, Sequence, Union

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

#: What a command is made of: bytes as they are, text as UTF-8, integers in
#: decimal.
Argument = Union[bytes, str, int]

#: What a command's L{Deferred} fires with: L{bytes} (bulk and status
#: replies), L{int}, L{None} (a null reply), or a L{list} of these.  An
#: error nested in an array (as in an C{EXEC} reply) stays in the list as a
#: L{RedisError}.
Reply = Any


class RedisError(Exception):
    """
    The server answered a command with an error reply.

    @ivar message: The server's message, starting with the error's code:
        C{"WRONGPASS invalid username-password pair ..."},
        C{"NOSCRIPT No matching script ..."}.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RedisProtocolError(Exception):
    """
    The server sent bytes that are not RESP.
    """


class HiredisMissing(ImportError):
    """
    The C{hiredis} package, which the Redis client needs, is not installed.
    """


def requireHiredis() -> ModuleType:
    """
    The C{hiredis} module.

    @raise HiredisMissing: It is not installed; the message says how to
        install it.
    """
    try:
        import hiredis
    except ImportError as e:
        raise HiredisMissing(
            "the Redis client needs the hiredis package: pip install 'logio[cluster]'"
        ) from e
    return hiredis


def encodeCommands(commands: Iterable[Sequence[Argument]]) -> bytes:
    """
    Encode commands as RESP arrays of bulk strings, one after the other.

    @param commands: Each a command's name and arguments, such as
        C{("XADD", b"records", "*", "data", blob)}.

    @raise TypeError: An argument is not L{bytes}, L{str} or L{int}.
    @raise ValueError: A command is empty.
    """
    parts = []
    for command in commands:
        if not command:
            raise ValueError("a Redis command needs at least a name")
        parts.append(b"*%d\r\n" % len(command))
        for argument in command:
            if isinstance(argument, bytes):
                value = argument
            elif isinstance(argument, str):
                value = argument.encode("utf-8")
            elif isinstance(argument, int) and not isinstance(argument, bool):
                value = b"%d" % argument
            else:
                raise TypeError(
                    f"a Redis command argument is bytes, str or int, not {type(argument).__name__}"
                )
            parts.append(b"$%d\r\n" % len(value))
            parts.append(value)
            parts.append(b"\r\n")
    return b"".join(parts)


class RedisProtocol(Protocol):
    """
    One connection to a Redis server.  Commands may be sent before the
    replies to earlier ones have come (pipelining); each command's
    L{Deferred} fires with its reply, in the order the commands were sent,
    or fails with L{RedisError} for an error reply.

    A command's L{Deferred} may be cancelled; its reply is then dropped when
    it comes.

    @ivar lostCallback: Called with the reason when the connection ends,
        before the commands still waiting for replies fail; set by whoever
        made the connection.
    """

    log = Logger()
    # Redis is reached over TCP, TLS-wrapped or not.
    transport: ITCPTransport

    def __init__(self) -> None:
        self._reader = requireHiredis().Reader(
            protocolError=RedisProtocolError, replyError=RedisError
        )
        self._waiting: deque[Deferred[Reply]] = deque()
        self._lost: Failure | None = None
        self.lostCallback: Callable[[Failure], object] | None = None

    def execute(self, *command: Argument) -> Deferred[Reply]:
        """
        Send one command.

        @param command: The command's name and arguments.

        @return: A L{Deferred} that fires with the reply, or fails with
            L{RedisError} for an error reply, or with the reason the
            connection ended (a L{ConnectionClosed
            <twisted.internet.error.ConnectionClosed>}) if it ends first.
        """
        return self.pipeline([command])[0]

    def pipeline(self, commands: Iterable[Sequence[Argument]]) -> list[Deferred[Reply]]:
        """
        Send several commands in one write.

        @param commands: Each a command's name and arguments.

        @return: A L{Deferred} for each command, as from L{execute}.

        @raise TypeError: See L{encodeCommands}; nothing is sent then.
        @raise ValueError: See L{encodeCommands}; nothing is sent then.
        """
        commands = list(commands)
        data = encodeCommands(commands)
        if self._lost is not None:
            return [fail(self._lost.value) for _ in commands]
        sent: list[Deferred[Reply]] = [Deferred() for _ in commands]
        self._waiting.extend(sent)
        self.transport.write(data)
        return sent

    def dataReceived(self, data: bytes) -> None:
        """
        Parse replies and fire the L{Deferred}s of the commands they answer.
        """
        reader = self._reader
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except RedisProtocolError:
                self.log.failure("Redis sent something that is not RESP; disconnecting")
                self.transport.abortConnection()
                return
            if reply is False:
                return
            if not self._waiting:
                self.log.error("Redis sent a reply to no command; disconnecting")
                self.transport.abortConnection()
                return
            waiting = self._waiting.popleft()
            if waiting.called:
                continue
            if isinstance(reply, RedisError):
                waiting.errback(reply)
            else:
                waiting.callback(reply)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell L{lostCallback}, then fail every command still waiting for its
        reply with C{reason}.
        """
        self._lost = reason
        if self.lostCallback is not None:
            self.lostCallback(reason)
        waiting, self._waiting = self._waiting, deque()
        for each in waiting:
            if not each.called:
                each.errback(reason)
