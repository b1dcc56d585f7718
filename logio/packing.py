# -*- test-case-name: tests.test_store -*-
"""
How the store packs a batch of records into one value, and back.

Most batches are packed flat, which costs little more than joining
strings: a C{F}, then every record's timestamp (23 characters each, see
L{logio.topic.formatTime}), one character per record for its level (the
first letter of its name, or C{-}), and the texts joined by NUL characters.
Records that share one timestamp (those of one read, the usual batch) have
it once, after an C{S} instead.
A batch whose texts hold a NUL, or whose timestamps are not 23 characters,
is packed as JSON after a C{J}.
"""

from __future__ import annotations

import json
from itertools import repeat
from operator import itemgetter
from typing import Iterable, Optional, cast

from logio.ingest.speedups import flatPack
from logio.levels import LEVELS
from logio.topic import Record

#: The length of every output timestamp: C{2016-12-06T22:14:21.448}.
STAMP = 23
#: Each level by the letter that stands for it; C{-} is none.
_LEVELS: dict[str, Optional[str]] = {level[0]: level for level in LEVELS}
_LEVELS["-"] = None
_LETTERS = {level: letter for letter, level in _LEVELS.items()}
_STAMP = itemgetter(0)
_TEXT = itemgetter(1)
_LEVEL = itemgetter(2)


def pack(records: list[Record]) -> tuple[bytes, str, str]:
    """
    One value for C{records}, which L{unpack} reads back exactly.

    @return: The value, and the oldest and the newest of the records'
        times.
    """
    if flatPack is not None:
        # The usual batch (ASCII, no levels), packed by the compiled
        # module as packRecords would.
        packed = flatPack(records, STAMP)
        if packed is not None:
            return cast("tuple[bytes, str, str]", packed)
    return packRecords(records)


def packRecords(records: list[Record]) -> tuple[bytes, str, str]:
    """
    L{pack} in Python: every batch.
    """
    # Not zip(*records): it makes an iterator per record, which the
    # garbage collector counts, and then runs far more often.
    stamps = list(map(_STAMP, records))
    texts = list(map(_TEXT, records))
    count = len(stamps)
    first = stamps[0]
    # Records of one read share their time: one stamp then stands for all.
    shared = stamps.count(first) == count
    oldest, newest = (first, first) if shared else (min(stamps), max(stamps))
    # A NUL of a text's own would split it (a one-character search is
    # far cheaper than counting separators).
    sized = len(first) == STAMP if shared else set(map(len, stamps)) == {STAMP}
    if not sized or "\x00" in "".join(texts):
        value = b"J" + json.dumps(records, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return value, oldest, newest
    if any(map(_LEVEL, records)):
        letters = "".join([_LETTERS[record[2]] for record in records])
    else:
        letters = "-" * count
    head = "S" + first if shared else "F" + "".join(stamps)
    return (head + letters + "\x00".join(texts)).encode("utf-8", "surrogatepass"), oldest, newest


def unpack(packed: bytes, count: int) -> list[Record]:
    """
    The C{count} records L{pack} made C{packed} of.
    """
    kind = packed[:1]
    if kind == b"J":
        return [(stamp, text, level) for stamp, text, level in json.loads(packed[1:])]
    value = packed[1:].decode("utf-8", "surrogatepass")
    start = STAMP if kind == b"S" else STAMP * count
    letters = value[start : start + count]
    rest = value[start + count :]
    texts = rest.split("\x00") if count > 1 else [rest]
    if letters.count("-") == count:
        levels: Iterable[Optional[str]] = repeat(None, count)
    else:
        levels = map(_LEVELS.__getitem__, letters)
    if kind == b"S":
        return list(zip(repeat(value[:STAMP], count), texts, levels, strict=True))
    stamps = [value[i : i + STAMP] for i in range(0, STAMP * count, STAMP)]
    return list(zip(stamps, texts, levels, strict=True))
