# -*- test-case-name: tests.test_client_handler -*-
"""
L{LogioHandler}: a C{logging} handler that publishes to a logio server.

    handler = LogioHandler("logio://logs.example.com?app=myapp&proc=web")
    logging.getLogger().addHandler(handler)

It works from C{logging.config.dictConfig} too (C{"class": "logio.LogioHandler"}
and the keyword arguments below). C{emit} only formats the record and queues
it; a daemon thread sends (see L{logio.client.publisher}).
"""

from __future__ import annotations

import logging
import os

from logio.client.publisher import Publisher
from logio.client.url import parse_url

#: The format used unless another formatter is set.
DEFAULT_FORMAT = "%(levelname)s %(name)s: %(message)s"


class LogioHandler(logging.Handler):
    """
    Publish each record as one logio record: C{time} is the record's creation
    time, C{raw} the formatted message with its traceback, if any.

    @ivar publisher: the L{Publisher} that queues and sends.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        max_records: int = 10000,
        max_bytes: int = 1024 * 1024,
        max_record_bytes: int = 60 * 1024,
        flush_timeout: float = 2.0,
        write_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        """
        @param url: a C{logio://}, C{logios://} or C{logio+unix://} URL (see
            L{logio.client.url}); by default the C{LOGIO_URL} environment
            variable.
        @param max_records: the most records queued; past it the oldest drop.
        @param max_bytes: the most bytes queued; past it the oldest drop.
        @param max_record_bytes: longer records are cut, marked C{[truncated]}.
        @param flush_timeout: how long C{flush}, C{close} and the exit flush
            wait for queued records to be sent, in seconds.
        @param write_timeout: how long one write may wait for a server that
            does not read before the connection is given up.
        @param connect_timeout: how long connecting may take.

        @raise ValueError: no URL, a bad URL, or a bad limit.
        """
        if url is None:
            url = os.environ.get("LOGIO_URL")
            if not url:
                raise ValueError("no logio URL given and LOGIO_URL is not set")
        # Everything that can fail comes before Handler.__init__, which
        # registers the handler with logging for shutdown.
        self.publisher = Publisher(
            parse_url(url),
            max_records=max_records,
            max_bytes=max_bytes,
            max_record_bytes=max_record_bytes,
            flush_timeout=flush_timeout,
            write_timeout=write_timeout,
            connect_timeout=connect_timeout,
        )
        super().__init__()
        self.setFormatter(logging.Formatter(DEFAULT_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        """
        Format the record and queue it; never blocks, never raises.
        """
        try:
            self.publisher.put(record.created, self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """
        Wait until what was logged so far is sent, at most C{flush_timeout}.
        """
        self.publisher.drain(self.publisher.flush_timeout)

    def close(self) -> None:
        """
        Send what is queued (at most C{flush_timeout}), then stop.
        """
        self.publisher.close()
        super().close()
