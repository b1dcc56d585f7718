# -*- test-case-name: tests.test_publish -*-
"""
Plain text lines: the first line is the topic as a query string
(C{app=myapp&proc=web&host=foobar}, the query of a C{LOGIO_URL}); every later
line is one record stamped with the server's receive time.

So C{{ echo 'app=cron'; tail -F cron.log; } | nc -N logio 7701} publishes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from twisted.protocols.basic import LineOnlyReceiver

from logio.ingest import base
from logio.ingest.base import BAD_TOPIC, Publisher, PublisherError, makeTopic
from logio.net import peerHost

TRUNCATED = base.TRUNCATED.encode()


class TextProtocol(Publisher, LineOnlyReceiver):
    """
    Split whole reads into lines (never one line at a time: see Twisted
    #6357) and publish one batch per read.

    A line longer than C{maxLine} bytes is cut there and marked with
    L{TRUNCATED}; the rest of it, up to its newline, is discarded and
    counted in C{discarded}.

    Reads without a newline are kept as they come, not joined to what came
    before, until the line ends: so a line trickling in byte by byte costs
    time linear in its length, not quadratic.
    """

    delimiter = b"\n"
    protocolName = "text"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # The reads of the line not ended yet, and their length.
        self._pending: list[bytes] = []
        self._pendingLength = 0
        self._discarding = False
        self.discarded = 0

    def dataReceived(self, data: bytes) -> None:
        if self.failed or self.stopped:
            return
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
                self.linesReceived([self._cut(self._takePending())])
                self._discarding = True
            return
        if self._pending:
            data = self._takePending() + data
        self._split(data)

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
        Publish the complete lines of C{data}, which holds at least one
        newline, and keep what follows the last one pending.
        """
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        complete, separator, rest = data.rpartition(b"\n")
        lines: list[bytes] = []
        if separator:
            lines = complete.split(b"\n")
            if len(complete) > self.maxLine:
                lines = [self._cut(line) for line in lines]
        # A pending line may end in the CR of a CRLF split across reads.
        if len(rest) - rest.endswith(b"\r") > self.maxLine:
            lines.append(self._cut(rest))
            self._discarding = True
            rest = b""
        if rest:
            self._pending = [rest]
            self._pendingLength = len(rest)
        self.linesReceived(lines)

    def changes(self) -> str:
        if not self.discarded:
            return ""
        return f"{self.discarded} bytes of over-long lines were cut off"

    def _cut(self, line: bytes) -> bytes:
        if len(line) <= self.maxLine:
            return line
        self.discarded += len(line) - self.maxLine
        return line[: self.maxLine] + TRUNCATED

    def lineReceived(self, line: bytes) -> None:
        """
        One line, as L{LineOnlyReceiver} would deliver it; this protocol's
        own L{dataReceived} hands over whole batches to L{linesReceived}.
        """
        self.linesReceived([line])

    def linesReceived(self, lines: list[bytes]) -> None:
        """
        Publish a batch of complete lines; the first line ever is the topic.
        """
        if not lines:
            return
        if self.topic is None:
            first = lines.pop(0).decode("utf-8", "replace").strip()
            query = parse_qs(first.partition("?")[2] if "?" in first else first)
            values = {
                name: query[name][0] if name in query else None
                for name in ("app", "proc", "host", "token")
            }
            try:
                self.setTopic(
                    makeTopic(
                        values["app"], values["proc"], values["host"], peerHost(self.transport)
                    ),
                    values["token"],
                )
            except PublisherError as e:
                hint = " (the first line is the topic, e.g. app=myapp&proc=web&host=foobar)"
                self.fail(f"{e}{hint if e.cause == BAD_TOPIC else ''}", e.cause)
                return
            if not lines:
                return
        stamp = self.now()
        text = b"\n".join(lines).decode("utf-8", "replace")
        self.publish([(stamp, line) for line in text.split("\n")], len(text))

    def endOfStream(self) -> PublisherError | None:
        """
        Publish a last line that has no newline (without a trailing CR).
        """
        if self._pending and not self.failed:
            line = self._takePending()
            self.linesReceived([line[:-1] if line.endswith(b"\r") else line])
        return None
