"""The NATS client protocol as the benchmark speaks it to nats-server, a peer under the
same loads as logio.

A connection opens with ``CONNECT {"verbose":false,"pedantic":false}``: no ``+OK`` for
each command. Publishers send pipelined ``PUB <subject> <bytes>\\r\\n<payload>\\r\\n``
commands (L{bench.wire.RecordEncoder}, ``nats``), the payload being the very log line a
logio publisher sends; the subject stands for the topic, ``app.proc.host``. Subscribers
send ``SUB <subject> 1`` and a ``PING``: the server's ``PONG`` says the subscription is
in place. Either side answers a ``PING`` of the server's with a ``PONG``.

A subscriber counts every ``MSG <subject> <sid> <bytes>\\r\\n<payload>\\r\\n`` the server
delivers, exactly: in counting mode by the ``\\nMSG `` that starts each message (no
benchmark payload holds it), across reads; in parsing mode each message's payload is read
for its publisher, sequence number and intended send time, as a logio line is.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .wire import FIELDS_RE, Arrivals, Fields, block_fields

CONNECT = b'CONNECT {"verbose":false,"pedantic":false}\r\n'
PING = b"PING\r\n"
PONG = b"PONG\r\n"
MARK = b"\nMSG "
"""Starts every message (after the CRLF that ends the line before)."""
PING_MARK = b"\nPING\r"
END = b"\n\r\n"
"""Ends every message whose payload is a benchmark line (which ends in a newline)."""
_HEADER = re.compile(rb"MSG \S+ \S+ (?:\S+ )?(\d+)\r\n")


def subject_for(app: str) -> str:
    """A subscription to every topic of ``app``: its subjects are ``app.proc.host``."""
    return f"{app}.>"


class _Spanning:
    """Counts occurrences of some markers in a stream read piece by piece, including those
    that span two reads. Each marker holds one newline, at its start, so no two
    occurrences overlap; a marker given a gate (one byte of it) is only looked for where
    that byte occurs, which a fast ``find`` tells (the server's rare lines)."""

    def __init__(self, markers: tuple[tuple[bytes, bytes], ...], before: bytes) -> None:
        self.markers = markers
        self.keep = max(len(m) for m, _ in markers) - 1
        self.carry = before[-self.keep :]

    def count(self, buf: bytearray, view: memoryview, start: int, n: int) -> list[int]:
        """How many times each marker occurs in ``buf[start:n]`` and across its start."""
        keep, carry = self.keep, self.carry
        edge = carry + bytes(view[start : min(n, start + keep)])
        counts = []
        for marker, gate in self.markers:
            if gate and gate not in carry and buf.find(gate, start, n) < 0:
                counts.append(0)
                continue
            # Those that span the carry and the new bytes: not all in the carry (counted
            # with the last read) nor all in the new bytes (counted in buf).
            spanning = edge.count(marker) - carry.count(marker) - edge.count(marker, len(carry))
            counts.append(spanning + buf.count(marker, start, n))
        if n - start >= keep:
            self.carry = bytes(view[n - keep : n])
        else:
            self.carry = (self.carry + bytes(view[start:n]))[-keep:]
        return counts


class NatsMessages(Arrivals):
    """One NATS subscriber connection: ``SUB subject``, then the messages counted (or, with
    ``parse``, their payloads' fields checked and timed in L{Fields}).

    ``reply`` holds what the worker must send back (``PONG`` for a server's ``PING``);
    the worker sends it and empties it."""

    def __init__(self, subject: str, parse: bool = False) -> None:
        super().__init__()
        self.request = CONNECT + b"SUB %s 1\r\n" % subject.encode() + PING
        self.parse = parse
        self.fields = Fields() if parse else None
        self.status = 0
        self.open = False
        self.ended = False
        self.reply = b""
        self.lines = 0
        self.dropped = 0
        self.notices = 0
        self.unparsed = 0
        self.pings = 0
        self.errors: list[str] = []
        self._head = bytearray()
        # Parsing counts whole messages by their ends instead.
        counted = () if parse else ((MARK, b""),)
        self._markers = _Spanning((*counted, (PING_MARK, b"P"), (b"\n-ERR ", b"-")), b"")

    def feed(self, buf: bytearray, view: memoryview, n: int, now_ns: int) -> None:
        """Consume ``buf[:n]``, just received at ``now_ns``."""
        start = 0
        if not self.open:
            self._head += view[:n]
            end = self._head.find(PONG)
            if end < 0:
                if b"-ERR" in self._head:
                    self.status = 500
                    self.open = True
                return
            start = n - (len(self._head) - end - len(PONG))
            del self._head[:]
            self.status = 200
            self.open = True
            self._markers = _Spanning(self._markers.markers, b"\r\n")
            if start >= n:
                return
        *messages, pings, errors = self._markers.count(buf, view, start, n)
        if pings:
            self.pings += pings
            self.reply += PONG * pings
        if errors:
            found = re.findall(rb"-ERR ([^\r\n]*)", bytes(view[start:n]))
            self.errors += [e.decode(errors="replace") for e in found] or ["-ERR"]
        if not self.parse:
            self.lines += messages[0]
            return
        self._tail += view[start:n]
        self._arrived(END, now_ns)

    def flush(self) -> None:
        """Parse the complete messages received so far (parse mode); each keeps the time
        of the ``feed`` that completed it."""
        if not self.pending:
            return
        data, arrived = self._take(END)
        width = data.find(END) + len(END)
        if len(data) == width * len(arrived) and self._matrix(data, width, arrived):
            return
        self._frames(data, arrived)

    def _matrix(self, data: bytes, width: int, arrived: np.ndarray) -> bool:
        """Parse ``data``, messages all ``width`` bytes long (one subject, one payload
        size), as one byte matrix if every row is a message with its fields at the same
        offsets; whether they were."""
        found = FIELDS_RE.search(data, 0, width)
        if not found or not data.startswith(b"MSG "):
            return False
        block = np.frombuffer(data, np.uint8).reshape(len(arrived), width)
        if not (block[:, :4] == np.frombuffer(b"MSG ", np.uint8)).all():
            return False
        if not (block[:, -3:] == np.frombuffer(END, np.uint8)).all():
            return False
        columns = block_fields(block, (found.start(1), found.start(2), found.start(3)))
        if columns is None:
            return False
        assert self.fields is not None
        self.fields.add(*columns, arrived)
        self.lines += len(arrived)
        return True

    def _frames(self, data: bytes, arrived: np.ndarray) -> None:
        """Parse ``data`` message by message, by its framing; skip the server's other
        lines (``PING``, ``-ERR``)."""
        assert self.fields is not None
        rows = []
        stamps = arrived.tolist()
        pos = units = 0
        while pos < len(data):
            header = _HEADER.match(data, pos)
            if header is None:
                eol = data.find(b"\r\n", pos)
                pos = len(data) if eol < 0 else eol + 2
                continue
            body = header.end()
            size = int(header.group(1))
            found = FIELDS_RE.search(data, body, body + size)
            if found and units < len(stamps):
                rows.append([*map(int, found.groups()), stamps[units]])
            else:
                self.unparsed += 1
            units += 1
            pos = body + size + 2
        if rows:
            table = np.array(rows, dtype=np.int64)
            self.fields.add(table[:, 0], table[:, 1], table[:, 2], table[:, 3])
        self.lines += len(rows)

    def result(self, published: dict[int, int]) -> dict[str, Any]:
        """What this subscriber saw."""
        if self.parse:
            self.flush()
        out: dict[str, Any] = {
            "status": self.status,
            "lines": self.lines,
            "dropped": 0,
            "notices": 0,
            "unparsed": self.unparsed,
            "pings": self.pings,
            "errors": self.errors[:3],
        }
        if self.fields is not None:
            out.update(self.fields.result(published))
        return out
