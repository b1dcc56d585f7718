# -*- test-case-name: tests.test_cluster_entries -*-
"""
What a node writes to the shared stream: one entry for the batches of one
read of a publisher, numbered in Redis (see L{logio.cluster.relay}).

An entry's C{d} field holds its batches one after the other, each a
header of five big-endian numbers (the lengths of the app, proc and host
names, the batch's record count and the length of its packed records)
followed by the three names in UTF-8 and the records as
L{logio.packing.pack} packs them.
"""

from __future__ import annotations

import struct
from typing import Iterator

from logio.packing import pack, unpack
from logio.topic import Record, Topic

_HEADER = struct.Struct(">HHHII")


class EntryError(ValueError):
    """
    An entry of the stream is not one this code wrote.
    """


def encodeBatches(batches: list[tuple[Topic, list[Record]]]) -> bytes:
    """
    The C{d} field of an entry holding C{batches}.
    """
    parts: list[bytes] = []
    for topic, records in batches:
        names = [
            name.encode("utf-8", "surrogatepass") for name in (topic.app, topic.proc, topic.host)
        ]
        packed = pack(records)[0]
        parts.append(
            _HEADER.pack(len(names[0]), len(names[1]), len(names[2]), len(records), len(packed))
        )
        parts.extend(names)
        parts.append(packed)
    return b"".join(parts)


def decodeBatches(data: bytes) -> Iterator[tuple[Topic, list[Record], int]]:
    """
    The batches of an entry's C{d} field: each its topic, its records and
    the bytes it took.

    @raise EntryError: If C{data} is not what L{encodeBatches} makes.
    """
    view = memoryview(data)
    at = 0
    end = len(data)
    try:
        while at < end:
            app, proc, host, count, size = _HEADER.unpack_from(view, at)
            at += _HEADER.size
            names = []
            for length in (app, proc, host):
                names.append(str(view[at : at + length], "utf-8", "surrogatepass"))
                at += length
            if at + size > end or not count:
                raise EntryError("a batch runs past the end of its entry")
            records = unpack(bytes(view[at : at + size]), count)
            at += size
            yield Topic(*names), records, size
    except (struct.error, UnicodeDecodeError, ValueError, KeyError) as e:
        if isinstance(e, EntryError):
            raise
        raise EntryError(f"not an entry of logio: {e}") from None
