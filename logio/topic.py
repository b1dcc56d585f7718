# -*- test-case-name: tests.test_topic -*-
"""
Topic and record value types, and the subscriber output line format.

A record travels through the server as a C{(timestamp, text, level)}
tuple: the timestamp already formatted as it appears in the output (UTC,
milliseconds, no zone), the log text with its trailing newline removed, and
the level its source gave (one of L{logio.levels.LEVELS}), or L{None}.
Tuples are used instead of a class on purpose: the publisher protocols
build one per record, on the hottest path there is.
"""

from __future__ import annotations

import re
import socket
from datetime import datetime, timezone
from typing import Optional, Tuple

from attrs import frozen

#: C{(formatted timestamp, text, level)}: see the module docstring.
Record = Tuple[str, str, Optional[str]]

_MAX_CACHED_STAMPS = 4096


@frozen(cache_hash=True)
class Topic:
    """
    Where a stream of records comes from.

    @ivar app: The application name; never empty.
    @ivar proc: The process type, C{"-"} when the publisher gave none.
    @ivar host: The publishing host.
    """

    app: str
    proc: str
    host: str

    def prefix(self) -> str:
        """
        The part of an output line between the timestamp and the log text.
        """
        return f" {self.app}[{self.proc}] {self.host}: "


def formatTime(when: datetime) -> str:
    """
    Format an aware datetime the way subscribers see it: UTC, milliseconds
    truncated, no zone, e.g. C{2016-12-06T22:14:21.448}.
    """
    utc = when.astimezone(timezone.utc).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds")


def formatEpoch(seconds: float) -> str:
    """
    Format a POSIX timestamp the way subscribers see it.
    """
    return formatTime(datetime.fromtimestamp(seconds, timezone.utc))


class StampParser:
    """
    Turn RFC 3339 timestamps into output timestamps, with a cache.

    Records of one millisecond share their output timestamp, so the cache key
    is the input with the fraction cut after the milliseconds; parsing
    happens once per distinct millisecond and zone.
    """

    def __init__(self) -> None:
        #: Output timestamps by key, filled by full parses only (the compiled
        #: seed decoder reads it directly).
        self.cache: dict[str, str] = {}
        self._cache = self.cache
        #: Look up an output timestamp by key, without parsing.  A stamp
        #: that ends at the milliseconds and is known to be well-formed is
        #: its own key.
        self.cached = self._cache.get

    def __call__(self, stamp: str) -> str | None:
        """
        Return the output timestamp for C{stamp}, or L{None} if it is not an
        RFC 3339 date-time with a zone.
        """
        # The first 23 characters hold everything up to the milliseconds,
        # the zone is "Z" or the last 6, and between them there may only be
        # more fraction digits.  So for valid input the key decides the
        # output; a key is cached only after a full parse.
        if stamp[-1:] == "Z":
            key = stamp[:23] + "Z"
            more = stamp[23:-1]
        else:
            key = stamp[:23] + stamp[-6:]
            more = stamp[23:-6]
        formatted = (
            self._cache.get(key) if not more or (more.isascii() and more.isdigit()) else None
        )
        if formatted is None:
            formatted = _parseRFC3339(stamp)
            if formatted is None:
                return None
            if len(self._cache) >= _MAX_CACHED_STAMPS:
                self._cache.clear()
            self._cache[key] = formatted
        return formatted


_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)", re.ASCII
)


def _parseRFC3339(stamp: str) -> str | None:
    """
    Parse one RFC 3339 date-time (any number of fraction digits, C{Z} or a
    numeric offset) and format it for output.
    """
    match = _RFC3339.fullmatch(stamp)
    if match is None:
        return None
    date, time, fraction, zone = match.groups()
    fraction = "." + fraction[:6] if fraction else ""
    zone = "+00:00" if zone in "Zz" else zone
    try:
        return formatTime(datetime.fromisoformat(f"{date}T{time}{fraction}{zone}"))
    except (ValueError, OverflowError):
        # Not a real date, or one whose UTC form is outside years 1-9999.
        return None


def serverHost() -> str:
    """
    The name this server uses for itself in the notices it writes.
    """
    return socket.gethostname()
