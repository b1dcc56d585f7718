# -*- test-case-name: tests.test_levels -*-
"""
Log levels: the seven names records carry, from the level their source
gives (a syslog severity, an OpenTelemetry severity, an NDJSON C{level}
field) or, for records whose source gives none, from a level word at the
start of their text.

A record's third item is the level its source gave, or L{None}; the word
in the text is looked for only when a subscriber needs the level (the
JSON and SSE outputs, C{?level=}), so publishing and the text output pay
nothing for it.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

import re2

from logio.topic import Record

#: The levels, least severe first.
LEVELS = ("trace", "debug", "info", "notice", "warn", "error", "fatal")
#: Each level's rank: a higher rank is more severe.
RANK = {name: rank for rank, name in enumerate(LEVELS)}

#: Syslog severities 0-7 (emergency ... debug).
_SYSLOG = ("fatal", "fatal", "fatal", "error", "warn", "notice", "info", "debug")

#: The names sources use, and pino's and bunyan's numbers.
_NAMES = {
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "informational": "info",
    "information": "info",
    "notice": "notice",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "err": "error",
    "fatal": "fatal",
    "critical": "fatal",
    "crit": "fatal",
    "alert": "fatal",
    "emerg": "fatal",
    "emergency": "fatal",
    "panic": "fatal",
    "10": "trace",
    "20": "debug",
    "30": "info",
    "40": "warn",
    "50": "error",
    "60": "fatal",
}

#: The level words looked for in a text, and the level each means.
_WORDS = {
    "TRACE": "trace",
    "DEBUG": "debug",
    "INFO": "info",
    "NOTICE": "notice",
    "WARN": "warn",
    "WARNING": "warn",
    "ERROR": "error",
    "FATAL": "fatal",
    "CRITICAL": "fatal",
}


def _leading(sgr: str) -> re.Pattern[str]:
    """
    A level word at the start of a text: after an optional timestamp
    (RFC 3339, Go's C{2016/12/06 17:14:21}, or a time of day, maybe in
    brackets), maybe in brackets itself (C{[ERROR]}, C{<WARN>}), and followed
    by anything but a letter or digit (C{ERROR:}, C{WARN }); with C{sgr}
    (a pattern for colour sequences) allowed around the timestamp and the
    word.
    """
    return re.compile(
        rf"{sgr}(?:[\[(]?(?:\d{{4}}([-/])\d\d\1\d\d[T ])?\d\d:\d\d:\d\d[.,\d]*"
        rf"(?:Z|[+-]\d\d:?\d\d)?[\])]?[ \t]+)?{sgr}[\[(<]?{sgr}"
        rf"({'|'.join(sorted(_WORDS, key=len, reverse=True))})(?![A-Za-z0-9_])"
    )


#: The level word of a text, and (slower) of one that may hold colour
#: sequences: a batch without an escape character anywhere uses the first.
_LEADING = _leading("")
_LEADING_SGR = _leading(r"(?:\x1b\[[0-9;]*m)*")
#: Any level word anywhere: a batch whose texts hold none has no level word
#: at the start of any of them (RE2 scans the bytes at hundreds of MB/s).
_ANYWHERE = re2.compile("|".join(_WORDS).encode("ascii"))


def fromSyslog(severity: int) -> str:
    """
    The level of a syslog severity (0-7).
    """
    return _SYSLOG[severity]


def fromOTLP(number: object, text: object) -> Optional[str]:
    """
    The level of an OpenTelemetry log record: its C{severityNumber} (1-24)
    if it has one, else its C{severityText} if that names a level.
    """
    if isinstance(number, int) and 1 <= number <= 24:
        return (
            LEVELS[0]
            if number <= 4
            else ("debug", "info", "warn", "error", "fatal")[(number - 5) // 4]
        )
    return fromName(text)


def fromName(name: object) -> Optional[str]:
    """
    The level a name such as C{"WARNING"}, C{"err"} or pino's C{40} means,
    or L{None}.
    """
    if isinstance(name, bool) or not isinstance(name, (str, int)):
        return None
    return _NAMES.get(str(name).strip().lower()) if len(str(name)) <= 16 else None


def detect(text: str) -> Optional[str]:
    """
    The level named by a word at the start of C{text}, or L{None}.
    """
    found = (_LEADING_SGR if "\x1b" in text else _LEADING).match(text)
    return None if found is None else _WORDS[found.group(2)]


def levelsOf(records: Sequence[Record], joined: Optional[bytes] = None) -> Optional[list[str]]:
    """
    The level of each record (C{""} where none is known), or L{None} if no
    record has one: the level its source gave, else a level word at the
    start of its text.

    @param joined: The records' texts joined and encoded as UTF-8, if the
        caller has them already.
    """
    given = [record[2] for record in records]
    if joined is None:
        joined = "".join([record[1] for record in records]).encode("utf-8", "replace")
    if _ANYWHERE.search(joined) is None:
        if not any(given):
            return None
        return [level or "" for level in given]
    match = (_LEADING_SGR if b"\x1b" in joined else _LEADING).match
    levels = []
    for level, record in zip(given, records, strict=True):
        if not level:
            found = match(record[1])
            level = "" if found is None else _WORDS[found.group(2)]
        levels.append(level)
    return levels if any(levels) else None


def ranks(records: Sequence[Record]) -> list[int]:
    """
    The L{RANK} of each record's level (see L{levelsOf}), C{-1} where none
    is known.
    """
    levels = levelsOf(records)
    if levels is None:
        return [-1] * len(records)
    return [RANK.get(level, -1) for level in levels]


def parseLevel(value: str) -> int:
    """
    The rank of the least severe level a C{?level=} value keeps.

    @raise ValueError: If C{value} names no level.
    """
    level = _NAMES.get(value.strip().lower()) if len(value) <= 16 else None
    if level is None:
        raise ValueError(f"unknown level {value[:40]!r}: use one of {', '.join(LEVELS)}")
    return RANK[level]
