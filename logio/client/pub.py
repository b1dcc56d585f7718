# -*- test-case-name: tests.test_client_cli -*-
"""
C{logio pub}: publish standard input, one record per line, with the queue,
reconnection and exit flush of L{logio.client.publisher.Publisher}.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

from logio.client.publisher import Publisher, truncate
from logio.client.url import parse_url

#: The proc of the lines of C{logio pub} when its URL names none.
PUB_PROC = "stdin"


def publishLines(url: str, timeout: float, max_lines: int, max_bytes: int, stdin: BinaryIO) -> int:
    """
    Publish C{stdin} line by line, reading no faster than the lines are
    sent while the server is reachable; report what could not be sent.
    """
    target = parse_url(url)
    if not parse_qs(urlsplit(url).query).get("proc"):
        # Not "logio", the program's name: the lines came from its input.
        target = dataclasses.replace(target, proc=PUB_PROC)
    publisher = Publisher(target, max_records=max_lines, max_bytes=max_bytes, flush_timeout=timeout)
    interrupted = False
    with _patientInterrupts(stdin):
        try:
            for line in _lines(stdin, publisher.max_record_bytes):
                publisher.put(time.time(), line, wait=True)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            unsent = publisher.close(0.0 if interrupted else None)
    failed = interrupted
    rejected = publisher.rejected
    unsent -= rejected
    if rejected:
        noun = "line was" if rejected == 1 else "lines were"
        print(
            f"logio pub: {rejected} {noun} refused by {publisher.target.describe()}",
            file=sys.stderr,
        )
    if publisher.dropped_total:
        noun = "line" if publisher.dropped_total == 1 else "lines"
        print(
            f"logio pub: {publisher.dropped_total} {noun} dropped: the queue was full",
            file=sys.stderr,
        )
        failed = True
    if unsent:
        noun = "line was" if unsent == 1 else "lines were"
        print(
            f"logio pub: {unsent} {noun} not sent within {timeout:g} s "
            f"to {publisher.target.describe()}",
            file=sys.stderr,
        )
        failed = True
    if publisher.refusal is not None:
        # Said already as it happened; what it cost the exit status says.
        failed = True
    return 130 if interrupted else 1 if failed else 0


@contextmanager
def _patientInterrupts(stdin: BinaryIO) -> Iterator[None]:
    """
    Ctrl-C in a terminal reaches every process of a pipeline: the app
    publishing through C{logio pub} then writes its last lines and ends.  So
    while stdin is a pipe, the first Ctrl-C is noted and reading goes on to
    the end of input; only a second one interrupts.
    """
    if stdin.isatty() or threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(number: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(
            "logio pub: interrupted; reading to the end of input (Ctrl-C again to stop now)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _lines(stream: BinaryIO, limit: int) -> Iterator[str]:
    """
    The lines of C{stream} as text ending in one newline, each at most
    C{limit} characters: the rest of a longer line is skipped.
    """
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        long = len(line) > limit and not line.endswith(b"\n")
        if long:
            # Skip to the end of this line without holding it in memory.
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                pass
        text = line.decode("utf-8", "replace").rstrip("\r\n") + "\n"
        yield truncate(text, limit) if long else text
