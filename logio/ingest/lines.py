# -*- test-case-name: tests.test_publish -*-
"""
The one line splitter of every line-based source: the text protocol on the
publisher port and C{POST /publish} bodies.
"""

from __future__ import annotations

from typing import Callable

#: What marks a record that was cut at C{--max-line}.
TRUNCATED = " [truncated]"
_TRUNCATED = TRUNCATED.encode()


#: Reads whose first line is at least this long are split with a search
#: for each newline (C{memchr}, a line at a time), the others with one
#: C{bytes.split}, which costs less per line but more per byte.
LONG_LINE = 256


def _longLines(data: bytes, newline: int) -> tuple[list[bytes], bytes]:
    """
    The complete lines of C{data}, whose first newline is at C{newline},
    and what follows the last one.
    """
    lines = []
    start = 0
    find = data.find
    while newline >= 0:
        lines.append(data[start:newline])
        start = newline + 1
        newline = find(b"\n", start)
    return lines, data[start:]


class LineSplitter:
    """
    Split a stream of bytes into lines, in batches: each read's complete
    lines are handed over together.  A CR before a newline is removed.

    A line longer than C{maxLine} bytes is cut there and marked with
    L{TRUNCATED}; the rest of it, up to its newline, is discarded and
    counted in C{discarded}.  So no line handed over is longer than
    C{maxLine} unless it was cut.

    Reads without a newline are kept as they come, not joined to what came
    before, until the line ends: a line trickling in byte by byte costs
    time linear in its length, not quadratic.

    @ivar discarded: Bytes of over-long lines cut off.
    """

    def __init__(self, maxLine: int, lines: Callable[[list[bytes]], None]) -> None:
        """
        @param lines: Called with each batch of complete lines, oldest
            first, without their newlines.
        """
        self.maxLine = maxLine
        self._lines = lines
        # The reads of the line not ended yet, and their length.
        self._pending: list[bytes] = []
        self._pendingLength = 0
        self._discarding = False
        self.discarded = 0

    @property
    def pending(self) -> bytes:
        """
        The line not ended yet, as far as it has come.
        """
        return b"".join(self._pending)

    def feed(self, data: bytes) -> None:
        """
        Take the next read of the stream.
        """
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                self.discarded += len(data)
                return
            self.discarded += newline
            self._discarding = False
            data = data[newline + 1 :]
        if b"\n" not in data:
            self._pending.append(data)
            self._pendingLength += len(data)
            # The line may end in the CR of a CRLF split across reads.
            if self._pendingLength - data.endswith(b"\r") > self.maxLine:
                self._lines([self._cut(self._takePending())])
                self._discarding = True
            return
        if self._pending:
            data = self._takePending() + data
        self._split(data)

    def end(self) -> None:
        """
        The stream has ended: hand over a last line that has no newline
        (without a trailing CR).
        """
        if self._pending:
            line = self._takePending()
            self._lines([line[:-1] if line.endswith(b"\r") else line])

    def _takePending(self) -> bytes:
        """
        The line not ended yet, in one piece, and none pending any more.
        """
        line = b"".join(self._pending)
        self._pending = []
        self._pendingLength = 0
        return line

    def _split(self, data: bytes) -> None:
        """
        Hand over the complete lines of C{data}, which holds at least one
        newline, and keep what follows the last one pending.
        """
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        first = data.find(b"\n")
        if first < LONG_LINE:
            complete, _, rest = data.rpartition(b"\n")
            lines = complete.split(b"\n")
            longest = len(complete)
        else:
            lines, rest = _longLines(data, first)
            longest = max(map(len, lines))
        if longest > self.maxLine:
            lines = [self._cut(line) for line in lines]
        # A pending line may end in the CR of a CRLF split across reads.
        if len(rest) - rest.endswith(b"\r") > self.maxLine:
            lines.append(self._cut(rest))
            self._discarding = True
            rest = b""
        if rest:
            self._pending = [rest]
            self._pendingLength = len(rest)
        self._lines(lines)

    def _cut(self, line: bytes) -> bytes:
        if len(line) <= self.maxLine:
            return line
        self.discarded += len(line) - self.maxLine
        return line[: self.maxLine] + _TRUNCATED
