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
from operator import itemgetter
from typing import Optional, Sequence

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
#: Every byte but the uppercase ASCII letters: deleting them from texts
#: leaves the letters level words are made of, in a string a fraction as
#: long.  A batch whose letters hold no level word has none at the start of
#: any text.
NOT_UPPER = bytes(sorted(set(range(256)) - set(range(0x41, 0x5B))))
_WORD_BYTES = tuple(word.encode("ascii") for word in _WORDS)


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


#: The level a record's source gave.
_given = itemgetter(2)


def levelsOf(records: Sequence[Record], letters: Optional[bytes] = None) -> Optional[list[str]]:
    """
    The level of each record (C{""} where none is known), or L{None} if no
    record has one: the level its source gave, else a level word at the
    start of its text.

    @param letters: The uppercase letters of the records' texts (their
        UTF-8 bytes without L{NOT_UPPER}; other bytes may be there too), if
        the caller has them already.
    """
    if letters is None:
        joined = "".join([record[1] for record in records]).encode("utf-8", "replace")
        letters = joined.translate(None, NOT_UPPER)
    if not any(word in letters for word in _WORD_BYTES):
        if not any(map(_given, records)):
            return None
        return [record[2] or "" for record in records]
    levels = [record[2] or detect(record[1]) or "" for record in records]
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
