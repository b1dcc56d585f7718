# -*- test-case-name: tests.test_timerange -*-
"""
Time ranges of a subscription: C{since} and C{until}, as RFC 3339 instants
(C{2026-12-05T02:00:00Z}, C{2026-12-05T03:00:00.5+01:00}) or as spans
before now (C{90s}, C{15m}, C{2h}, C{7d}, C{1w}).

A range selects records by their time as the output shows it: UTC,
milliseconds, no zone (L{logio.topic.formatTime}).  Timestamps of that form
order as their strings do, so a record is in a range when its timestamp
string is between the range's two.
"""

from __future__ import annotations

import re
from typing import Optional

from attrs import frozen

from logio.topic import StampParser, formatEpoch

#: The units of a span, in seconds.
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SPAN = re.compile(r"(\d{1,9}(?:\.\d{1,6})?)([smhdw])", re.ASCII)
#: The earliest output timestamp: year 1.
_EARLIEST = "0001-01-01T00:00:00.000"


@frozen
class TimeRange:
    """
    The records of a time range: those whose output timestamp C{ts} has
    C{since <= ts <= until}.

    @ivar since: The earliest timestamp in the range.
    @ivar until: The latest timestamp in the range, or L{None} for one open
        towards the future.
    """

    since: str = _EARLIEST
    until: Optional[str] = None

    def __contains__(self, stamp: str) -> bool:
        return self.since <= stamp and (self.until is None or stamp <= self.until)


def parseSpan(value: str) -> float:
    """
    The seconds of a span: C{90s}, C{15m}, C{2h}, C{7d}, C{1w}.

    @raise ValueError: If C{value} is not one.
    """
    span = _SPAN.fullmatch(value.strip())
    if span is None:
        raise ValueError(f"not a span such as 90s, 15m, 2h, 7d or 1w: {value[:64]!r}")
    return float(span.group(1)) * _UNITS[span.group(2)]


def parseInstant(name: str, value: str, now: float) -> str:
    """
    The output timestamp of a C{since} or C{until} value.

    @param now: The current time, as a POSIX timestamp: spans count back
        from it.
    @raise ValueError: If C{value} is neither form; the message names the
        parameter.
    """
    span = _SPAN.fullmatch(value.strip())
    if span is not None:
        seconds = float(span.group(1)) * _UNITS[span.group(2)]
        try:
            return formatEpoch(now - seconds)
        except (ValueError, OverflowError, OSError):
            return _EARLIEST
    stamp = StampParser()(value.strip()) if len(value) <= 64 else None
    if stamp is None:
        raise ValueError(
            f"{name} must be an RFC 3339 time (2026-12-05T02:00:00Z) or a span before now "
            f"(90s, 15m, 2h, 7d, 1w), not {value[:64]!r}"
        )
    return stamp


def parseRange(since: Optional[str], until: Optional[str], now: float) -> Optional[TimeRange]:
    """
    The range of a subscription's C{since} and C{until} values (either may
    be absent or empty), or L{None} if neither is given.

    @raise ValueError: If either is malformed, or C{until} is before
        C{since}.
    """
    if not (since or until):
        return None
    start = parseInstant("since", since, now) if since else _EARLIEST
    end = parseInstant("until", until, now) if until else None
    if end is not None and end < start:
        raise ValueError(f"until ({end}Z) is before since ({start}Z)")
    return TimeRange(start, end)
