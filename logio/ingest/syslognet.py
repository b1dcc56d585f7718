# -*- test-case-name: tests.test_syslog -*-
"""
Syslog's transports: TCP on the publisher port, where a connection that
starts with C{<} or a digit is syslog, and UDP (C{--syslog-udp}).

Over TCP each frame is either newline-framed (it starts with C{<}) or RFC
6587 octet-counted (C{LEN SP MSG}, it starts with a digit), and a
connection may switch between the two, as rsyslog does.  Over UDP a
datagram is one message.  Messages are read by L{logio.ingest.syslog}.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.python.failure import Failure

from logio.auth import Tokens
from logio.ingest.base import Publisher, PublisherError
from logio.ingest.lines import TRUNCATED
from logio.ingest.syslog import (
    DEFAULT_APP,
    MAX_COUNT_DIGITS,
    Batches,
    SyslogReader,
    parseMessage,
)
from logio.interfaces import IBroker
from logio.net import PROTECTED, PROTECTED_MODE, isLoopback, peerHost
from logio.refusals import Refusals
from logio.settings import Settings
from logio.topic import StampParser, Topic, formatEpoch

_TRUNCATED = TRUNCATED.encode()


class SyslogProtocol(Publisher, Protocol):
    """
    Syslog over TCP: frames newline-framed or octet-counted, switching at
    any frame, published one batch per read.

    A frame longer than C{maxLine} bytes is cut there and marked with
    L{TRUNCATED}; the rest of it is discarded and counted in C{discarded}.
    """

    protocolName = "syslog"

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        maxLine: int,
        refusals: Refusals,
        stamps: StampParser,
        tokens: Optional[Tokens] = None,
    ) -> None:
        super().__init__(broker, clock, maxLine, refusals, tokens)
        self.reader = SyslogReader(broker, clock, stamps, tokens, self.now)
        self._buffer = b""
        # Bytes still to skip of a cut frame, or -1 to skip up to a newline.
        self._skip = 0
        self.discarded = 0
        self._peer = ""

    def connectionMade(self) -> None:
        self._peer = peerHost(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self.failed or self.stopped:
            return
        if self._skip:
            data = self._skipped(data)
            if not data:
                return
        buffer = self._buffer + data if self._buffer else data
        batches: Batches = {}
        position, error = self._frames(buffer, batches)
        self._buffer = buffer[position:]
        if error is None and len(self._buffer) > self.maxLine + MAX_COUNT_DIGITS + 1:
            error = self._cutPending(batches)
        self._publishFrames(batches, position, error)

    def _skipped(self, data: bytes) -> bytes:
        """
        What is left of C{data} after the rest of a cut frame.
        """
        if self._skip < 0:
            newline = data.find(b"\n")
            if newline < 0:
                self.discarded += len(data)
                return b""
            self.discarded += newline
            self._skip = 0
            return data[newline + 1 :]
        taken = min(self._skip, len(data))
        self._skip -= taken
        self.discarded += taken
        return data[taken:]

    def _frames(self, buffer: bytes, batches: Batches) -> tuple[int, Optional[PublisherError]]:
        """
        Read the complete frames at the start of C{buffer} into C{batches}.

        @return: Where the incomplete rest begins, and why a message was
            refused, if one was (reading stopped there).
        """
        position = 0
        length = len(buffer)
        maxLine = self.maxLine
        reader = self.reader
        peer = self._peer
        while position < length:
            first = buffer[position]
            if first in b"\r\n \t\x00":
                position += 1
                continue
            frame = None
            if 0x30 <= first <= 0x39:
                taken = reader.takeOctets(buffer, position, maxLine, peer, batches)
                if taken != position:
                    position = taken
                    continue
                space = buffer.find(b" ", position, position + MAX_COUNT_DIGITS + 1)
                if space < 0:
                    if length - position <= MAX_COUNT_DIGITS:
                        return position, None
                else:
                    digits = buffer[position:space]
                    if digits.isdigit():
                        count = int(digits)
                        start = space + 1
                        if count > maxLine:
                            if length - start < maxLine:
                                return position, None
                            frame = buffer[start : start + maxLine] + _TRUNCATED
                            self.discarded += count - maxLine
                            taken = min(count, length - start)
                            self._skip = count - taken
                            position = start + taken
                        elif length - start < count:
                            return position, None
                        else:
                            frame = buffer[start : start + count]
                            position = start + count
                # Digits not followed by a space: a newline-framed line.
            if frame is None:
                newline = buffer.find(b"\n", position)
                if newline < 0:
                    return position, None
                if newline - position > maxLine:
                    frame = buffer[position : position + maxLine] + _TRUNCATED
                    self.discarded += newline - position - maxLine
                else:
                    frame = buffer[position:newline]
                position = newline + 1
            error = reader.add(parseMessage(frame), peer, batches)
            if error is not None:
                return position, error
        return position, None

    def _cutPending(self, batches: Batches) -> Optional[PublisherError]:
        """
        The newline-framed frame pending has grown past C{maxLine}: cut it
        there and skip the rest of it up to its newline.
        """
        pending = self._buffer
        self._buffer = b""
        self.discarded += len(pending) - self.maxLine
        self._skip = -1
        return self.reader.add(
            parseMessage(pending[: self.maxLine] + _TRUNCATED), self._peer, batches
        )

    def _publishFrames(
        self, batches: Batches, size: int, error: Optional[PublisherError] = None
    ) -> None:
        self.reader.flush(batches, size)
        if self.topic is None and batches:
            # The connection is a publisher now: its topic deadline is met.
            self.topic = Topic(DEFAULT_APP, "-", self._peer)
        if error is not None:
            self.fail(str(error), error.cause)

    def recheck(self) -> None:
        self.reader.forgetAccess()

    def endOfStream(self) -> Optional[PublisherError]:
        """
        Publish a last newline-framed message that has no newline.
        """
        if self._buffer and not self.failed:
            buffer, self._buffer = self._buffer, b""
            batches: Batches = {}
            error = self.reader.add(parseMessage(buffer.rstrip(b"\r")), self._peer, batches)
            self._publishFrames(batches, len(buffer), error)
        return None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.reader.close()

    def changes(self) -> str:
        changes = []
        if self.reader.malformed:
            changes.append(f"{self.reader.malformed} messages were not RFC 5424 or 3164")
        if self.reader.badTimes:
            changes.append(f"{self.reader.badTimes} timestamps did not parse")
        if self.discarded:
            changes.append(f"{self.discarded} bytes of over-long messages were cut off")
        return "; ".join(changes)


class SyslogDatagramProtocol(DatagramProtocol):
    """
    Syslog over UDP: one message per datagram, cut at C{maxLine}.  A
    message whose token may not publish is dropped, and the refusal logged.
    """

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        settings: Settings,
        refusals: Refusals,
        tokens: Optional[Tokens] = None,
    ) -> None:
        self.maxLine = settings.maxLine
        self.protected = settings.protected
        self.refusals = refusals
        self.reader = SyslogReader(broker, clock, StampParser(), tokens, self._now)
        self._clock = clock
        if tokens is not None:
            tokens.watch(self.reader.forgetAccess)

    def _now(self) -> str:
        return formatEpoch(self._clock.seconds())

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        peer = str(addr[0]) if isinstance(addr, tuple) else "unix"
        if self.protected and peer != "unix" and not isLoopback(peer):
            self.refusals.refuse(
                "publisher", PROTECTED_MODE, f"{peer} (syslog over UDP): {PROTECTED}"
            )
            return
        if len(datagram) > self.maxLine:
            datagram = datagram[: self.maxLine] + _TRUNCATED
        frame = datagram.rstrip(b"\r\n\x00")
        error = self.reader.publish([parseMessage(frame)], peer, len(datagram))
        if error is not None:
            self.refusals.refuse("publisher", error.cause, f"{peer} (syslog over UDP): {error}")

    def stopProtocol(self) -> None:
        self.reader.close()
