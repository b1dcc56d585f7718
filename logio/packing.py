# -*- test-case-name: tests.test_store -*-
"""
How the store packs a batch of records into one value, and back.

Most batches are packed flat, which costs little more than joining
strings: a C{F}, then every record's timestamp (23 characters each, see
L{logio.topic.formatTime}), one character per record for its level (the
first letter of its name, or C{-}), and the texts joined by NUL characters.
A batch whose texts hold a NUL, or whose timestamps are not 23 characters,
is packed as JSON after a C{J}.
"""

from __future__ import annotations

import json
from typing import Optional

from logio.levels import LEVELS
from logio.topic import Record

#: The length of every output timestamp: C{2016-12-06T22:14:21.448}.
STAMP = 23
#: Each level by the letter that stands for it; C{-} is none.
_LEVELS: dict[str, Optional[str]] = {level[0]: level for level in LEVELS}
_LEVELS["-"] = None
_LETTERS = {level: letter for letter, level in _LEVELS.items()}


def pack(records: list[Record]) -> bytes:
    """
    One value for C{records}, which L{unpack} reads back exactly.
    """
    texts = "\x00".join([record[1] for record in records])
    stamps = "".join([record[0] for record in records])
    # A NUL of a text's own would split it.
    if texts.count("\x00") >= len(records) or len(stamps) != STAMP * len(records):
        return b"J" + json.dumps(records, ensure_ascii=False).encode("utf-8", "surrogatepass")
    letters = "".join([_LETTERS[record[2]] for record in records])
    return ("F" + stamps + letters + texts).encode("utf-8", "surrogatepass")


def unpack(packed: bytes, count: int) -> list[Record]:
    """
    The C{count} records L{pack} made C{packed} of.
    """
    if packed[:1] == b"J":
        return [(stamp, text, level) for stamp, text, level in json.loads(packed[1:])]
    value = packed[1:].decode("utf-8", "surrogatepass")
    stamps = value[: STAMP * count]
    letters = value[STAMP * count : STAMP * count + count]
    texts = (
        value[STAMP * count + count :].split("\x00")
        if count > 1
        else [value[STAMP * count + count :]]
    )
    return [
        (stamps[i * STAMP : (i + 1) * STAMP], texts[i], _LEVELS[letters[i]]) for i in range(count)
    ]
