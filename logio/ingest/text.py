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

from logio.ingest.base import BAD_TOPIC, Publisher, PublisherError, makeTopic
from logio.ingest.lines import LineSplitter
from logio.net import peerHost


class TextProtocol(Publisher, LineOnlyReceiver):
    """
    Split whole reads into lines (never one line at a time: see Twisted
    #6357) with the L{LineSplitter}, and publish one batch per read.

    A line longer than C{maxLine} bytes is cut there and marked with
    L{TRUNCATED}; the rest of it, up to its newline, is discarded and
    counted.
    """

    delimiter = b"\n"
    protocolName = "text"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.splitter = LineSplitter(self.maxLine, self.linesReceived)

    def dataReceived(self, data: bytes) -> None:
        if not (self.failed or self.stopped):
            self.splitter.feed(data)

    def changes(self) -> str:
        if not self.splitter.discarded:
            return ""
        return f"{self.splitter.discarded} bytes of over-long lines were cut off"

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
        self.publish(
            [(stamp, line.decode("utf-8", "replace"), None) for line in lines],
            sum(map(len, lines)) + len(lines) - 1,
        )

    def endOfStream(self) -> PublisherError | None:
        """
        Publish a last line that has no newline (without a trailing CR).
        """
        if not self.failed:
            self.splitter.end()
        return None
