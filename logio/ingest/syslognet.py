# -*- test-case-name: tests.test_syslog -*-
"""
Syslog's transports: TCP on the publisher port, where a connection that
starts with C{<} or a digit is syslog, and UDP (C{--syslog-udp}).

Over TCP each frame is either RFC 6587 octet-counted (C{LEN SP MSG}, it
starts with a digit) or it starts with C{<} and ends at a newline or a NUL
(Python's C{SysLogHandler} ends each message with a NUL and nothing else),
and a connection may switch between the two, as rsyslog does.  A
header-less message (the PRI, then at once the tag or the text: what
C{SysLogHandler} sends) may span lines, as a traceback does: it ends at a
NUL, or at a newline that another message (C{<}) follows.  A NUL inside an
octet-counted frame is text.  Over UDP a datagram is one message.  Messages
are read by L{logio.ingest.syslog}.
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
    HEADERLESS,
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

#: What is skipped of a cut frame that is not octet-counted: up to its
#: newline or NUL, or, for a header-less message, up to its NUL or a
#: newline before C{<}.
_SKIP_LINE = -1
_SKIP_MESSAGE = -2


class _Ends:
    """
    Where the frames that are not octet-counted end in one buffer.

    The next newline and the next NUL are remembered until passed, so each
    byte is searched at most once for each: a stream ended by one of them
    never searches the rest of the buffer for the other frame after frame.
    """

    __slots__ = ("buffer", "length", "newline", "nul")

    def __init__(self, buffer: bytes) -> None:
        self.buffer = buffer
        self.length = len(buffer)
        # Found at or after the last position looked from; the length if
        # there is none.
        self.newline = self.nul = -1

    def frame(self, position: int) -> int:
        """
        Where the frame at C{position}, not octet-counted, ends: its first
        newline or NUL; for a header-less message, its first NUL or newline
        before C{<}.  C{-1} if that is not in the buffer yet.
        """
        buffer, length = self.buffer, self.length
        headerless = None
        start = position
        while True:
            if self.newline < start:
                found = buffer.find(b"\n", start)
                self.newline = found if found >= 0 else length
            if self.nul < start:
                found = buffer.find(b"\0", start)
                self.nul = found if found >= 0 else length
            end = self.newline if self.newline < self.nul else self.nul
            # Only a newline that C{<} does not follow tells the two apart.
            if end == length or end == self.nul or buffer[end + 1 : end + 2] == b"<":
                break
            if headerless is None:
                headerless = HEADERLESS.match(buffer, position) is not None
            if not headerless:
                break
            start = end + 1
        return end if end < length else -1


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
        # Bytes still to skip of a cut frame, or _SKIP_LINE or _SKIP_MESSAGE.
        self._skip = 0
        # A newline that ended what was skipped of a header-less message:
        # whether it ends the message depends on the byte after it.
        self._skippedNewline = False
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
        if self._skip == _SKIP_LINE:
            end = data.find(b"\n")
            nul = data.find(b"\0", 0, end if end >= 0 else len(data))
            if nul >= 0:
                end = nul
        elif self._skip == _SKIP_MESSAGE:
            if self._skippedNewline:
                data = b"\n" + data
                self._skippedNewline = False
            end = data.find(b"\0")
            before = data.find(b"\n<", 0, end if end >= 0 else len(data))
            if before >= 0:
                end = before
            elif end < 0 and data.endswith(b"\n"):
                self._skippedNewline = True
                data = data[:-1]
        else:
            taken = min(self._skip, len(data))
            self._skip -= taken
            self.discarded += taken
            return data[taken:]
        if end < 0:
            self.discarded += len(data)
            return b""
        self.discarded += end
        self._skip = 0
        return data[end + 1 :]

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
        ends = _Ends(buffer)
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
                end = ends.frame(position)
                if end < 0:
                    return position, None
                if end - position > maxLine:
                    frame = buffer[position : position + maxLine] + _TRUNCATED
                    self.discarded += end - position - maxLine
                else:
                    frame = buffer[position:end]
                position = end + 1
            error = reader.add(parseMessage(frame), peer, batches)
            if error is not None:
                return position, error
        return position, None

    def _cutPending(self, batches: Batches) -> Optional[PublisherError]:
        """
        The frame pending, not octet-counted, has grown past C{maxLine}: cut
        it there and skip the rest of it up to its end.
        """
        pending = self._buffer
        self._buffer = b""
        self._skip = _SKIP_MESSAGE if HEADERLESS.match(pending) else _SKIP_LINE
        # The frame does not end in what is pending: all of the rest is
        # skipped (a last newline held, if the next byte may end the frame).
        self._skipped(pending[self.maxLine :])
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
        Publish a last message that has no newline or NUL.
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
