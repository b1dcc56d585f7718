# -*- test-case-name: tests.test_formats -*-
"""
Output formats: how a batch of records from one topic becomes bytes for the
subscribers that share a format.

  - L{TextFormat}: the seed's C{<ts> <app>[<proc>] <host>: <log>} lines;
  - L{JSONFormat}: one JSON object per record (C{application/x-ndjson});
  - L{SSEFormat}: server-sent events, one per record, with resumable ids.

A format encodes a batch once per group of subscribers, into L{Segment}s
that say where their records end, so a subscriber's queue can drop whole
records without knowing the format.
"""

from __future__ import annotations

import json
from itertools import repeat
from operator import itemgetter
from typing import Callable, Mapping, Optional, Sequence

from zope.interface import implementer

from logio.fields import CLEAN_BUT_NEWLINE, RESERVED_APP, UNSAFE, escape, escapeKeepingSGR
from logio.http import PLAIN_TEXT
from logio.interfaces import Encoder, IFormat, Segment
from logio.levels import LEVELS, levelsOf
from logio.topic import Record, Topic

#: A record's text.
_text = itemgetter(1)

#: JSON's string encoder (the C one): quotes and escapes, non-ASCII kept.
_escape: Callable[[str], str] = json.encoder.encode_basestring
#: Quote a string that needs no escapes.
_quote: Callable[[str], str] = '"%s"'.__mod__
#: The UTF-8 bytes a JSON string must escape (controls, quote, backslash)
#: become 1; uppercase letters stay, for the level words (see
#: L{logio.levels.NOT_UPPER}); every other byte is deleted.
_MARKS = bytes(1 if c < 0x20 or c in b'"\\' else c for c in range(256))
_UNMARKED = bytes(c for c in range(256) if not (c < 0x20 or c in b'"\\' or 0x41 <= c <= 0x5A))
#: The C{level} member that ends a record's object, by level.
_LEVEL_MEMBERS = {"": "", **{level: f', "level": "{level}"' for level in LEVELS}}


def _quoter(records: Sequence[Record]) -> tuple[Callable[[str], str], Optional[list[str]]]:
    """
    How to quote the texts of C{records} as JSON strings, and their levels
    as the C{level} members that end their objects (C{""} for a record
    without one; L{None} if no record has one).  JSON's own encoder looks
    at every character of every text; a batch that needs no escape
    anywhere is only put in quotes.  One pass over the batch's bytes finds
    both the escapes and the letters level words are made of.
    """
    joined = "".join([record[1] for record in records]).encode("utf-8", "replace")
    marks = joined.translate(_MARKS, _UNMARKED)
    levels = levelsOf(records, marks)
    members = None if levels is None else [_LEVEL_MEMBERS[level] for level in levels]
    return (_escape if 1 in marks else _quote), members


#: What publishers and subscribers are told when the server stops: a
#: connection that just ends looks like a filter that matches nothing, or
#: a server of another kind.
SHUTTING_DOWN = "the server is shutting down"


def dropMessage(dropped: int) -> str:
    """
    What a subscriber is told after it lost C{dropped} lines.
    """
    return f"{dropped} lines dropped: this subscriber is reading too slowly"


def pack(lines: Sequence[str], prefix: str, shown: Callable[[str], str] = escape) -> list[Segment]:
    """
    Encode formatted text lines into as few segments as possible.

    Each line is C{<ts><prefix><text>\\n}, all with the same C{prefix}.
    Usually every text is one physical line and the result is one segment.
    A multi-line text gets the timestamp and prefix repeated on each of its
    physical lines and becomes a segment of its own, so a subscriber's
    queue can drop it whole.

    The characters that could move a terminal's cursor or fake a line are
    shown escaped (by C{shown}: L{logio.fields.escape}, or
    L{logio.fields.escapeKeepingSGR}); the timestamp and prefix hold none.
    """
    text = "".join(lines)
    data = text.encode("utf-8", "replace")
    # One pass over the bytes finds the newlines, and the batches that may
    # need escaping: any other suspect byte left.
    suspects = data.translate(None, CLEAN_BUT_NEWLINE)
    count = suspects.count(b"\n")
    if len(suspects) > count and UNSAFE.search(text) is not None:
        lines = [shown(line) for line in lines]
        text = "".join(lines)
        data = text.encode("utf-8", "replace")
    if count == len(lines):
        return [Segment(data, count, b"\n")]
    segments: list[Segment] = []
    run: list[str] = []
    for line in lines:
        physical = line.count("\n")
        if physical == 1:
            run.append(line)
            continue
        if run:
            segments.append(Segment("".join(run).encode("utf-8", "replace"), len(run), b"\n"))
            run = []
        head = line[: line.index(prefix) + len(prefix)]
        line = line.replace("\n", "\n" + head, physical - 1)
        segments.append(Segment(line.encode("utf-8", "replace"), physical, None))
    if run:
        segments.append(Segment("".join(run).encode("utf-8", "replace"), len(run), b"\n"))
    return segments


@implementer(IFormat)
class TextFormat:
    """
    The seed's output: C{<ts> <app>[<proc>] <host>: <log>}, one line per
    physical line of a record, each with the prefix.

    @ivar host: The server's name, in its notices.
    @ivar keepSGR: Whether colour sequences are passed through raw
        (C{?ansi=keep}, for a terminal) rather than shown escaped.
    """

    name = "text"
    contentType = PLAIN_TEXT
    keepAlive = None

    def __init__(self, host: str, keepSGR: bool = False) -> None:
        self.host = host
        self.keepSGR = keepSGR

    def encoder(self, topic: Topic) -> Encoder:
        prefix = topic.prefix()
        shown = escapeKeepingSGR if self.keepSGR else escape

        def encode(records: Sequence[Record], seqs: Sequence[int]) -> list[Segment]:
            return pack([f"{ts}{prefix}{text}\n" for ts, text, _ in records], prefix, shown)

        return encode

    def lines(self, records: Sequence[Record]) -> int:
        # A multi-line record is a line for each of its physical lines.
        return len(records) + "".join(map(_text, records)).count("\n")

    def notice(self, stamp: str, message: str, dropped: Optional[int] = None) -> bytes:
        return f"{stamp} {RESERVED_APP}[{RESERVED_APP}] {self.host}: {escape(message)}\n".encode(
            "utf-8", "replace"
        )


def _topicFields(topic: Topic) -> str:
    """
    The middle of a record's JSON object: its topic, up to the C{log} value.
    """
    return (
        f'"app": {_escape(topic.app)}, "proc": {_escape(topic.proc)}, '
        f'"host": {_escape(topic.host)}, "log": '
    )


def _noticeObject(stamp: str, message: str, dropped: Optional[int]) -> str:
    fields: dict[str, object] = {} if dropped is None else {"dropped": dropped}
    fields.update(time=stamp + "Z", notice=message)
    return json.dumps(fields, ensure_ascii=False)


@implementer(IFormat)
class JSONFormat:
    """
    JSON lines: C{{"seq": 42, "time": "2016-12-06T22:14:21.448Z", "app":
    …, "proc": …, "host": …, "log": …}} per record, a multi-line record in
    one object, and C{"level": …} last where the record's level is known
    (L{logio.levels.levelsOf}); a notice is C{{"dropped": N, "time": …,
    "notice": …}}.
    """

    name = "json"
    contentType = b"application/x-ndjson"
    keepAlive = None

    def encoder(self, topic: Topic) -> Encoder:
        fields = _topicFields(topic)

        def encode(records: Sequence[Record], seqs: Sequence[int]) -> list[Segment]:
            quote, levels = _quoter(records)
            if levels is None:
                text = "".join(
                    [
                        f'{{"seq": {seq}, "time": "{ts}Z", {fields}{quote(log)}}}\n'
                        for seq, (ts, log, _) in zip(seqs, records, strict=True)
                    ]
                )
            else:
                text = "".join(
                    [
                        f'{{"seq": {seq}, "time": "{ts}Z", {fields}{quote(log)}{level}}}\n'
                        for seq, (ts, log, _), level in zip(seqs, records, levels, strict=True)
                    ]
                )
            return [Segment(text.encode("utf-8", "replace"), len(records), b"\n")]

        return encode

    def lines(self, records: Sequence[Record]) -> int:
        return len(records)

    def notice(self, stamp: str, message: str, dropped: Optional[int] = None) -> bytes:
        return (_noticeObject(stamp, message, dropped) + "\n").encode("utf-8", "replace")


@implementer(IFormat)
class SSEFormat:
    """
    Server-sent events: C{id: <start>-<seq>} and C{data: <the JSON
    object>} per record; a drop notice is C{event: dropped}, other notices
    C{event: notice}, both without an id, so a client resumes after the
    last record it got.

    @ivar start: The server's start instant in milliseconds, the first part
        of every id, so an id from before a restart is recognised.
    """

    name = "sse"
    contentType = b"text/event-stream; charset=utf-8"
    keepAlive = b": keep-alive\n\n"

    def __init__(self, start: int) -> None:
        self.start = start

    def encoder(self, topic: Topic) -> Encoder:
        fields = _topicFields(topic)

        def encode(records: Sequence[Record], seqs: Sequence[int]) -> list[Segment]:
            # Read each time: a cluster node's epoch may change.
            start = self.start
            quote, levels = _quoter(records)
            text = "".join(
                [
                    f'id: {start}-{seq}\ndata: {{"seq": {seq}, "time": "{ts}Z", '
                    f"{fields}{quote(log)}{level}}}\n\n"
                    for seq, (ts, log, _), level in zip(
                        seqs, records, levels or repeat(""), strict=levels is not None
                    )
                ]
            )
            return [Segment(text.encode("utf-8", "replace"), len(records), b"\n\n")]

        return encode

    def lines(self, records: Sequence[Record]) -> int:
        return len(records)

    def notice(self, stamp: str, message: str, dropped: Optional[int] = None) -> bytes:
        event = "notice" if dropped is None else "dropped"
        data = _noticeObject(stamp, message, dropped)
        return f"event: {event}\ndata: {data}\n\n".encode("utf-8", "replace")


#: The most digits either number of an event id has (a 64-bit number has 20).
MAX_ID_DIGITS = 20


def parseEventId(eventId: str, start: int) -> Optional[int]:
    """
    The sequence number in an event id this server wrote, or L{None} for
    an id from another run of the server (another C{start}).

    @raise ValueError: If C{eventId} is not of the form C{<start>-<seq>}.
    """
    first, dash, seq = eventId.partition("-")
    if not (
        dash
        and first.isdigit()
        and seq.isdigit()
        and first.isascii()
        and seq.isascii()
        and len(first) <= MAX_ID_DIGITS
        and len(seq) <= MAX_ID_DIGITS
    ):
        raise ValueError(f"not a logio event id (<start>-<seq>): {eventId[:100]!r}")
    return int(seq) if int(first) == start else None


#: Media types a subscriber may ask for in C{Accept}, and the format each means.
ACCEPT = {b"application/x-ndjson": "json", b"text/event-stream": "sse"}


def chooseFormat(
    formats: Mapping[str, IFormat], asked: Optional[str], accept: Optional[bytes]
) -> IFormat:
    """
    The format a subscription asked for: C{?format=} first, else the first
    media type of C{Accept} that names one, else text.

    @raise ValueError: If C{asked} names no format.
    """
    if asked:
        if asked not in formats:
            raise ValueError(f"unknown format {asked!r}: use one of {', '.join(formats)}")
        return formats[asked]
    for item in (accept or b"").split(b","):
        name = ACCEPT.get(item.partition(b";")[0].strip().lower())
        if name is not None:
            return formats[name]
    return formats["text"]
