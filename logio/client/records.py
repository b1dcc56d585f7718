# -*- test-case-name: tests.test_client_handler -*-
"""
The seed JSON records the client writes, as the Go client does:
C{{"time": RFC 3339 in the local zone, "raw": the text}}, cut to a bound
and marked where they are too long.
"""

from __future__ import annotations

import time
from json.encoder import encode_basestring

#: What one queued record costs besides its text, for the byte bound.
RECORD_OVERHEAD = 64

_TRUNCATED = " [truncated]\n"


def wire(text: str) -> bytes:
    """
    Encode for the wire. A lone surrogate (as from C{os.fsdecode}) becomes
    C{\\uXXXX}, which is what JSON means by it.
    """
    return text.encode("utf-8", "backslashreplace")


def truncate(raw: str, limit: int) -> str:
    """
    Cut C{raw} so that it has at most C{limit} characters, marking the cut.
    """
    if len(raw) <= limit:
        return raw
    return raw[: max(limit - len(_TRUNCATED), 0)] + _TRUNCATED


def drop_notice(count: int) -> str:
    """
    The text of the record that reports dropped records.
    """
    noun = "record" if count == 1 else "records"
    return (
        f"logio: {count} {noun} dropped: the client's queue was full "
        "(server unreachable or too slow)\n"
    )


def _offset(seconds: int) -> str:
    """
    A UTC offset as RFC 3339 writes it: C{Z}, C{+05:30}, C{-05:00}.
    """
    if seconds == 0:
        return "Z"
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class SeedRecords:
    """
    Encode records, each at most C{max_record_bytes} once encoded; the
    local time of a second is formatted once.
    """

    def __init__(self, max_record_bytes: int) -> None:
        self.max_record_bytes = max_record_bytes
        self.forget()

    def forget(self) -> None:
        """
        Forget the second formatted last (the local zone may have changed).
        """
        self._second = -1
        self._second_text = ""
        self._zone = ""

    def record(self, created: float, raw: str) -> str:
        """
        One seed JSON record, C{{"time": RFC 3339 local, "raw": text}}, cut
        to C{max_record_bytes} once encoded.
        """
        limit = self.max_record_bytes
        while True:
            text = f'{{"time":"{self.timestamp(created)}","raw":{encode_basestring(raw)}}}'
            # Encoded, a character is at most 6 bytes (a lone surrogate's
            # escape), so most records need no measuring.
            if len(text) * 6 <= limit or (size := len(wire(text))) <= limit:
                return text
            raw = truncate(raw, int(len(raw) * limit / size) - RECORD_OVERHEAD)

    def timestamp(self, created: float) -> str:
        """
        RFC 3339 with microseconds and the local offset, like Go's
        C{time.RFC3339Nano}: C{2016-12-06T17:14:21.448123-05:00}.
        """
        second = int(created)
        if second != self._second:
            local = time.localtime(second)
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", local)
            self._zone = _offset(local.tm_gmtoff)
        micros = min(round((created - second) * 1e6), 999999)
        return f"{self._second_text}.{micros:06d}{self._zone}"
