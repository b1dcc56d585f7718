"""Wire formats the benchmark speaks, as publisher and as subscriber.

Publishers write the seed JSON stream (the Go client's exact bytes: JSON values back to
back), the text-line protocol, pipelined Redis ``PUBLISH`` or NATS ``PUB`` commands. Every
log line the benchmark sends carries the same fixed-width fields in its text::

    pub=007 seq=0000000042 ts=0000012345678901234 xxxxxxxx...

(publisher id, per-publisher sequence number, intended send time on the monotonic clock in
nanoseconds), padded to 99 characters plus the newline: a 100-byte line (other widths on
request, from MIN_TEXT characters).

Subscribers read logio's streaming HTTP/1.1 response (chunked) in the format their query
asks for (``format=``: text lines, JSON lines or server-sent events, see L{OutputFormat})
and either count records, or parse those fields to check sequence numbers and measure
latency. Because every output record for one topic has the same length (in JSON and SSE,
while the server's own sequence number keeps its number of digits), a block of complete
records is parsed as a NumPy matrix; anything else (the server's drop notices, a change of
width) takes a slower regex path. Redis subscribers count ``pmessage`` replies. Counting is
always of delivered records, never bytes divided by an assumed line size.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import numpy as np

LINE_TEXT = 99
"""Characters of log text per line; with its newline a line is 100 bytes."""

_FIELDS = b"pub=%03d seq=%010d ts=%019d "
MIN_TEXT = len(_FIELDS % (0, 0, 0))
"""The shortest log text a benchmark line can have: its fields and a space."""
_PAD = b"x" * (LINE_TEXT - MIN_TEXT)
FIELDS_RE = re.compile(rb"pub=(\d{3}) seq=(\d{10}) ts=(\d{19}) ")
NOTICE = b" logio[logio] "
"""Starts every notice of the server in text (after its time stamp)."""
NOTICE_RE = re.compile(
    rb"logio\[logio\] [^\n]*?: (\d+) "
    rb"(?:lines dropped: |records (?:of \S+ )?could not be relayed by the cluster)[^\n]*\n"
)
"""A text notice of lines a subscriber will not get: dropped for reading too slowly, or
records of a cluster that never reached this node; group 1 is the count."""


@dataclass(frozen=True)
class OutputFormat:
    """How one of logio's subscriber formats frames records and drop notices."""

    name: str
    content_type: bytes
    """The start of the response's ``Content-Type``."""
    end: bytes
    """What ends each unit of output: a record, a notice or a keep-alive."""
    notice: bytes
    """Appears in a drop notice and in no record."""
    notice_re: re.Pattern[bytes]
    """Finds each drop notice in a block of whole lines; group 1 is the count."""
    record: bytes = b""
    """The start of the line that carries a record (empty: every line but a notice)."""
    keep_alive: bytes = b""
    """Starts a unit that carries nothing (an SSE comment line)."""


FORMATS = {
    "text": OutputFormat("text", b"text/plain", b"\n", NOTICE, NOTICE_RE),
    # {"seq": 42, "time": "...Z", "app": ..., "log": ...} per line; a drop notice is
    # {"dropped": N, "time": ..., "notice": ...}.
    "json": OutputFormat(
        "json",
        b"application/x-ndjson",
        b"\n",
        b'{"dropped": ',
        re.compile(rb'(?m)^\{"dropped": (\d+)[,}]'),
    ),
    # id: <start>-<seq>\ndata: <the JSON object>\n\n per record; a drop notice is
    # event: dropped\ndata: {"dropped": N, ...}\n\n, without an id.
    "sse": OutputFormat(
        "sse",
        b"text/event-stream",
        b"\n\n",
        b'data: {"dropped": ',
        re.compile(rb'(?m)^data: \{"dropped": (\d+)[,}]'),
        record=b'data: {"seq": ',
        keep_alive=b": keep-alive\n",
    ),
}


def query_format(query: str) -> OutputFormat:
    """The output format a subscriber query asks for (``format=``; text by default)."""
    name = parse_qs(query).get("format", ["text"])[0]
    if name not in FORMATS:
        raise ValueError(f"the benchmark does not read format {name!r}")
    return FORMATS[name]


# Latency histogram: log-spaced bucket edges from 1 us to 100 s, under 1 % apart.
FLUSH_LINES = 4096
FLUSH_NS = 50_000_000
EDGES_NS = np.unique(np.geomspace(1_000, 100e9, 2400).astype(np.int64))


def rfc3339(wall: float) -> bytes:
    """Format a wall-clock time like Go's RFC3339Nano in the local zone, fixed width."""
    local = time.localtime(wall)
    offset = local.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    nanos = int((wall % 1) * 1e9)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local)
    zone = f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    return f"{stamp}.{nanos:09d}{zone}".encode()


def line_text(pub: int, seq: int, ts: int) -> bytes:
    """The 99 characters of log text for one benchmark line, without newline."""
    return _FIELDS % (pub, seq, ts) + _PAD


# ---------------------------------------------------------------------------------------
# Publisher side


def logio_topic(proto: str, app: str, proc: str, host: str) -> bytes:
    """The bytes that open a logio publisher connection: the topic in the seed JSON or
    text protocol; nothing for syslog, whose every message names its topic; the head of
    a chunked ``POST /publish`` for ``http``."""
    if proto == "syslog":
        return b""
    if proto == "http":
        return (
            b"POST /publish?app=%s&proc=%s&host=%s HTTP/1.1\r\nHost: localhost\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" % (app.encode(), proc.encode(), host.encode())
        )
    if proto == "seed":
        return b'{"app":"%s","proc":"%s","host":"%s"}' % (
            app.encode(),
            proc.encode(),
            host.encode(),
        )
    return b"app=%s&proc=%s&host=%s\n" % (app.encode(), proc.encode(), host.encode())


class RecordEncoder:
    """Encodes benchmark lines as one publisher protocol's records."""

    def __init__(
        self,
        proto: str,
        channel: bytes = b"",
        topic: tuple[str, str, str] = ("", "", ""),
        width: int = LINE_TEXT,
    ) -> None:
        """``width``: characters of log text per line, without its newline."""
        self.proto = proto
        if width < MIN_TEXT:
            raise ValueError(f"a benchmark line holds at least {MIN_TEXT} characters")
        self._pad = b"x" * (width - MIN_TEXT)
        if proto == "seed":
            self._template = b'{"time":"%s","raw":"%s\\n"}'
        elif proto in ("text", "http"):
            self._template = b"%s%s\n"
        elif proto == "syslog":
            # RFC 5424, octet-counted: <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG.
            app, proc, host = (field.encode() for field in topic)
            self._template = b"<14>1 %%s %s %s %s - - %%s" % (host, app, proc)
        elif proto == "redis":
            head = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(channel), channel)
            self._template = head.replace(b"%", b"%%") + b"$%d\r\n%%s%%s\n\r\n" % (width + 1)
        elif proto == "nats":
            head = b"PUB %s %d\r\n" % (channel, width + 1)
            self._template = head.replace(b"%", b"%%") + b"%s%s\n\r\n"
        else:
            raise ValueError(f"unknown publisher protocol {proto!r}")

    def encode(self, stamps: list[bytes], pub: int, seqs: range, times: list[int]) -> bytes:
        """Encode lines ``seqs`` of publisher ``pub``; ``stamps[i]`` is record i's time."""
        template, pad = self._template, self._pad
        if self.proto == "seed":
            return b"".join(
                [
                    template % (stamp, _FIELDS % (pub, seq, ts) + pad)
                    for stamp, seq, ts in zip(stamps, seqs, times, strict=True)
                ]
            )
        if self.proto == "syslog":
            messages = [
                # RFC 5424 allows six digits of fraction: cut the nanoseconds.
                template % (stamp[:26] + stamp[29:], _FIELDS % (pub, seq, ts) + pad)
                for stamp, seq, ts in zip(stamps, seqs, times, strict=True)
            ]
            return b"".join([b"%d %s" % (len(message), message) for message in messages])
        data = b"".join(
            [
                template % (b"", _FIELDS % (pub, seq, ts) + pad)
                for seq, ts in zip(seqs, times, strict=True)
            ]
        )
        if self.proto == "http":
            # One chunk of the streamed request body.
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data


def blast_buffer(
    proto: str,
    pub: int,
    records: int,
    channel: bytes = b"",
    topic: tuple[str, str, str] = ("", "", ""),
    width: int = LINE_TEXT,
) -> bytes:
    """A block of ``records`` lines that a publisher sends again and again at full speed.

    Seed records carry record times 10 us apart, as a busy Go client would stamp them.
    """
    now = time.time()
    stamps = [rfc3339(now + i * 10e-6) for i in range(records)]
    encoder = RecordEncoder(proto, channel, topic, width)
    return encoder.encode(stamps, pub, range(records), [0] * records)


def redis_command(*args: bytes) -> bytes:
    """One Redis command in RESP."""
    parts = [b"*%d\r\n" % len(args)]
    parts += [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args]
    return b"".join(parts)


# ---------------------------------------------------------------------------------------
# Subscriber side


class Fields:
    """Sequence and latency accounting for parsed benchmark lines, from any number of
    publishers, for one subscriber."""

    def __init__(self) -> None:
        self.next_seq = np.zeros(1000, dtype=np.int64)
        self.missing = 0
        self.reordered = 0
        self.histogram = np.zeros(len(EDGES_NS) + 1, dtype=np.int64)
        self.max_latency_ns = 0

    def add(self, pub: np.ndarray, seq: np.ndarray, ts: np.ndarray, now_ns: np.ndarray) -> None:
        """Account for a block of lines in arrival order, received at ``now_ns``."""
        if len(pub) == 0:
            return
        latency = now_ns - ts
        self.histogram += np.bincount(
            np.searchsorted(EDGES_NS, latency, side="right"), minlength=len(self.histogram)
        )
        self.max_latency_ns = max(self.max_latency_ns, int(latency.max()))
        order = np.argsort(pub, kind="stable")
        pubs, seqs = pub[order], seq[order]
        same = pubs[1:] == pubs[:-1]
        step = np.diff(seqs)
        self.missing += int((step[same & (step > 1)] - 1).sum())
        self.reordered += int((same & (step < 1)).sum())
        starts = np.flatnonzero(np.concatenate(([True], ~same)))
        ends = np.concatenate((starts[1:], [len(pubs)])) - 1
        gap = seqs[starts] - self.next_seq[pubs[starts]]
        self.missing += int(gap[gap > 0].sum())
        self.reordered += int((gap < 0).sum())
        self.next_seq[pubs[ends]] = np.maximum(self.next_seq[pubs[ends]], seqs[ends] + 1)

    def result(self, published: dict[int, int]) -> dict[str, Any]:
        """Totals; ``published`` maps publisher id to lines sent, to count lines lost at
        the end of the stream as missing too."""
        tail = sum(max(0, n - int(self.next_seq[pub])) for pub, n in published.items())
        return {
            "missing": self.missing + tail,
            "reordered": self.reordered,
            "histogram": self.histogram,
            "max_latency_ns": self.max_latency_ns,
        }


def _digits(block: np.ndarray, offset: int, width: int) -> np.ndarray:
    """Decode a fixed-width decimal column of a byte matrix."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (block[:, offset : offset + width].astype(np.int64) - 48) @ powers


def block_fields(
    block: np.ndarray, offsets: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The publisher, sequence and send-time columns of a matrix of benchmark lines of
    one width, whose fields' digits start at ``offsets``; None if any row lacks the
    ``pub=``, ``seq=`` or ``ts=`` label before them."""
    for offset, label in zip(offsets, (b"pub=", b"seq=", b"ts="), strict=True):
        start = offset - len(label)
        if not (block[:, start:offset] == np.frombuffer(label, np.uint8)).all():
            return None
    pub, seq, ts = (_digits(block, o, w) for o, w in zip(offsets, (3, 10, 19), strict=True))
    return pub, seq, ts


class Arrivals:
    """What a parsing subscriber connection keeps of what it received: the bytes of
    units not parsed yet, how many complete units arrived at each ``feed`` and when,
    so each unit keeps its arrival time; parsed (``flush``) in groups."""

    def __init__(self) -> None:
        self._tail = bytearray()
        self._counted = 0
        self._arrivals: list[tuple[int, int]] = []
        self._flushed_ns: int | None = None
        self.flush_ns = FLUSH_NS
        """Parse what arrived at least this often (each unit keeps its arrival time)."""
        self.pending = 0
        """Units received and not parsed yet."""

    def _arrived(self, end: bytes, now_ns: int) -> None:
        """Count the units ``_tail`` completed since last time (each ends in ``end``) as
        arrived at ``now_ns``, and parse when enough waited, or long enough."""
        arrived = self._tail.count(end, max(0, self._counted - len(end) + 1))
        self._counted = len(self._tail)
        if arrived:
            if self._flushed_ns is None:
                # Each connection parses in a phase of its own: many connections
                # started together would otherwise all parse at the same moments,
                # each time holding up the reads of every one for as long.
                self._flushed_ns = now_ns - random.randrange(self.flush_ns)
            self._arrivals.append((arrived, now_ns))
            self.pending += arrived
            if self.pending >= FLUSH_LINES or now_ns - self._flushed_ns > self.flush_ns:
                self.flush()
                self._flushed_ns = now_ns

    def flush(self) -> None:
        raise NotImplementedError

    def _take(self, end: bytes) -> tuple[bytes, np.ndarray]:
        """The complete units received so far (each ends in ``end``), and each one's
        arrival time; both forgotten here."""
        tail = self._tail
        size = tail.rfind(end) + len(end)
        counts, stamps = zip(*self._arrivals, strict=True)
        arrived = np.repeat(np.array(stamps, dtype=np.int64), counts)
        self._arrivals.clear()
        self.pending = 0
        self._counted -= size
        data = bytes(tail[:size])
        del tail[:size]
        return data, arrived


class HttpLines(Arrivals):
    """One logio subscriber connection: HTTP response headers, then the chunked body in
    the format the query asks for, split into records that are counted (``parse=False``)
    or parsed into L{Fields}.

    ``lines`` counts records (an SSE event is one, however many lines it takes); drop
    notices are counted apart, in ``notices`` and ``dropped``. ``feed`` is called with
    the worker's shared receive buffer after each ``recv_into``; nothing here keeps a
    reference to it.
    """

    def __init__(self, query: str, parse: bool) -> None:
        super().__init__()
        self.request = b"GET /?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % query.encode()
        self.format = query_format(query)
        self._marker = b"\n" + self.format.record
        self.parse = parse
        self.fields = Fields() if parse else None
        self.head = bytearray()
        self.status = 0
        self.content_type = b""
        self.open = False
        self.chunked = False
        self.ended = False
        self._remaining = 0
        self._skip = 0
        self._size_line = bytearray()
        self.lines = 0
        self.dropped = 0
        self.notices = 0
        self.unparsed = 0
        self.keep_alives = 0

    @property
    def format_error(self) -> str:
        """Why the response is not in the format asked for ('' if it is)."""
        if self.content_type.startswith(self.format.content_type):
            return ""
        return f"content-type {self.content_type.decode()!r} for format={self.format.name}"

    def feed(self, buf: bytearray, view: memoryview, n: int, now_ns: int) -> None:
        """Consume ``buf[:n]``, just received at ``now_ns``."""
        pos = 0
        if not self.open:
            self.head += view[:n]
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            pos = n - (len(self.head) - end - 4)
            head = bytes(self.head[:end]).lower()
            self.status = int(head.split(b" ", 2)[1])
            self.chunked = b"transfer-encoding: chunked" in head
            found = re.search(rb"\r\ncontent-type: *([^\r]*)", head)
            self.content_type = found.group(1) if found else b""
            self.open = True
            del self.head[:]
        if self.chunked:
            self._dechunk(buf, view, pos, n)
        else:
            self._data(buf, view, pos, n)
        if self.parse:
            self._arrived(self.format.end, now_ns)

    def _dechunk(self, buf: bytearray, view: memoryview, pos: int, n: int) -> None:
        while pos < n and not self.ended:
            if self._remaining:
                take = min(self._remaining, n - pos)
                self._data(buf, view, pos, pos + take)
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._skip = 2
            elif self._skip:
                take = min(self._skip, n - pos)
                pos += take
                self._skip -= take
            else:
                eol = buf.find(b"\n", pos, n)
                if eol < 0:
                    self._size_line += view[pos:n]
                    return
                line: bytes | bytearray
                if self._size_line:
                    self._size_line += view[pos:eol]
                    line = bytes(self._size_line)
                    del self._size_line[:]
                else:
                    line = buf[pos:eol]
                size = int(line.partition(b";")[0], 16)
                pos = eol + 1
                if size == 0:
                    self.ended = True
                self._remaining = size

    def _data(self, buf: bytearray, view: memoryview, start: int, end: int) -> None:
        if self.parse:
            self._tail += view[start:end]
            return
        first = buf.find(b"\n", start, end)
        if first < 0:
            self._tail += view[start:end]
            return
        last = buf.rfind(b"\n", first, end)
        if self._tail:
            self._tail += view[start : first + 1]
            whole = bytes(self._tail)
            del self._tail[:]
            count = self._count(whole, 0, len(whole)) + self._count(buf, first + 1, last + 1)
        else:
            count = self._count(buf, start, last + 1)
        self.lines += count
        if last + 1 < end:
            self._tail += view[last + 1 : end]

    def _count(self, data: bytes | bytearray, start: int, end: int) -> int:
        """The records among the whole lines ``data[start:end]``; notices apart."""
        form = self.format
        notices = 0
        if data.find(form.notice, start, end) >= 0:
            notices = self._notices(bytes(data[start:end]))
        if form.keep_alive and data.find(form.keep_alive, start, end) >= 0:
            self.keep_alives += bytes(data[start:end]).count(form.keep_alive)
        if not form.record:
            return data.count(b"\n", start, end) - notices
        return data.count(self._marker, start, end) + data.startswith(form.record, start, end)

    def _notices(self, block: bytes) -> int:
        counts = self.format.notice_re.findall(block)
        self.notices += len(counts)
        self.dropped += sum(int(c) for c in counts)
        return len(counts)

    def flush(self) -> None:
        """Parse the complete units received so far (parse mode). Records are parsed in
        bulk; each keeps the time of the ``feed`` that completed it."""
        if not self.pending:
            return
        end = self.format.end
        data, arrived = self._take(end)
        width = data.find(end) + len(end)
        if len(data) == len(arrived) * width and self._matrix(data, width, arrived):
            return
        self._runs(data, arrived)

    def _matrix(self, data: bytes, width: int, arrived: np.ndarray) -> bool:
        """Parse ``data``, units all ``width`` bytes long, as one byte matrix if they are
        all records with their fields at the same offsets; whether they were."""
        form = self.format
        found = FIELDS_RE.search(data, 0, width)
        if not found or data.find(form.notice) >= 0:
            return False
        block = np.frombuffer(data, np.uint8).reshape(len(arrived), width)
        offsets = (found.start(1), found.start(2), found.start(3))
        for column in range(1, len(form.end) + 1):
            if not (block[:, -column] == 10).all():
                return False
        columns = block_fields(block, offsets)
        if columns is None:
            return False
        assert self.fields is not None
        self.fields.add(*columns, arrived)
        self.lines += len(arrived)
        return True

    def _runs(self, data: bytes, arrived: np.ndarray) -> None:
        """Parse ``data`` run by run of units of one length (the JSON and SSE records grow
        by a digit when the server's sequence number does), each run as a matrix if it
        can be; what is not a run of records, by regex."""
        end = self.format.end
        codes = np.frombuffer(data, np.uint8) == 10
        if len(end) == 1:
            ends = np.flatnonzero(codes) + 1
        else:
            ends = np.flatnonzero(codes[:-1] & codes[1:]) + 2
        if len(ends) != len(arrived) or data.count(end) != len(arrived):
            self._regex(data, arrived)
            return
        lengths = np.diff(ends, prepend=0)
        bounds = [0, *(np.flatnonzero(np.diff(lengths)) + 1).tolist(), len(ends)]
        for first, stop in zip(bounds[:-1], bounds[1:], strict=False):
            begin = int(ends[first - 1]) if first else 0
            run = data[begin : int(ends[stop - 1])]
            width = int(lengths[first])
            if stop - first < 8 or not self._matrix(run, width, arrived[first:stop]):
                self._regex(run, arrived[first:stop])

    def _regex(self, data: bytes, arrived: np.ndarray) -> None:
        """Parse whole units one by one: records by their fields, and notices."""
        assert self.fields is not None
        form = self.format
        notices = self._notices(data)
        idle = data.count(form.keep_alive) if form.keep_alive else 0
        self.keep_alives += idle
        rows = []
        for unit, when in zip(data.split(form.end), arrived.tolist(), strict=False):
            found = FIELDS_RE.search(unit)
            if found:
                rows.append([*map(int, found.groups()), when])
        if rows:
            table = np.array(rows, dtype=np.int64)
            self.fields.add(table[:, 0], table[:, 1], table[:, 2], table[:, 3])
        self.lines += len(rows)
        self.unparsed += len(arrived) - len(rows) - notices - idle

    def result(self, published: dict[int, int]) -> dict[str, Any]:
        """What this subscriber saw."""
        self.flush()
        out: dict[str, Any] = {
            "status": self.status,
            "format": self.format.name,
            "lines": self.lines,
            "dropped": self.dropped,
            "notices": self.notices,
            "unparsed": self.unparsed,
            "keep_alives": self.keep_alives,
            "ended": self.ended,
        }
        if self.fields is not None:
            out.update(self.fields.result(published))
        return out


class RedisMessages:
    """One Redis pub/sub connection (``PSUBSCRIBE``): counts ``pmessage`` replies."""

    MARK = b"pmessage\r\n"

    def __init__(self, pattern: str, parse: bool = False) -> None:
        if parse:
            raise ValueError("Redis subscribers only count")
        self.request = redis_command(b"PSUBSCRIBE", pattern.encode())
        self.status = 200
        self.dropped = 0
        self.pending = 0
        self.open = False
        self.ended = False
        self.lines = 0
        self._carry = b""
        self._head = bytearray()

    def feed(self, buf: bytearray, view: memoryview, n: int, now_ns: int) -> None:
        """Consume ``buf[:n]``."""
        start = 0
        if not self.open:
            self._head += view[:n]
            end = self._head.find(b":1\r\n")
            if self._head.find(b"psubscribe") < 0 or end < 0:
                return
            start = n - (len(self._head) - end - 4)
            self.open = True
        if start >= n:
            return
        keep = len(self.MARK) - 1
        if self._carry:
            # an occurrence in carry + head must span the boundary: each is too short
            self.lines += (self._carry + bytes(view[start : start + keep])).count(self.MARK)
        self.lines += buf.count(self.MARK, start, n)
        if n - start >= keep:
            self._carry = bytes(view[n - keep : n])
        else:
            self._carry = (self._carry + bytes(view[start:n]))[-keep:]

    def result(self, published: dict[int, int]) -> dict[str, Any]:
        """What this subscriber saw."""
        return {"status": 200, "lines": self.lines, "dropped": 0, "notices": 0}


def percentiles(histogram: np.ndarray, max_ns: int, qs: tuple[float, ...]) -> list[float]:
    """Upper bounds (ms) of the given quantiles of a latency histogram."""
    total = int(histogram.sum())
    if not total:
        return [float("nan")] * len(qs)
    cumulative = np.cumsum(histogram)
    out = []
    for q in qs:
        index = int(np.searchsorted(cumulative, q * total, side="left"))
        bound = int(EDGES_NS[index]) if index < len(EDGES_NS) else max_ns
        out.append(min(bound, max_ns) / 1e6)
    return out
