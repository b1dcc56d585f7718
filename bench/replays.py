"""History replays: L{publish_records} publishes an exact number of lines, and the
L{fetch_replays} worker times ``?tail=N&follow=0`` requests one after another and checks
that every replayed line arrived, in order.
"""

from __future__ import annotations

import socket
import time
from multiprocessing.connection import Connection
from typing import Any

from .wire import HttpLines, RecordEncoder, logio_topic, rfc3339
from .workers import RECV_BUFFER, PubSpec, guarded


def publish_records(port: int, spec: PubSpec, count: int, timeout: float = 30.0) -> None:
    """Publish lines ``0 .. count - 1`` of ``spec`` on one connection, then close it and
    wait until the server closes its side (it would first write an ``error:`` line)."""
    encoder = RecordEncoder(spec.proto, spec.channel, spec.topic)
    stamp = rfc3339(time.time())
    now = time.monotonic_ns()
    data = encoder.encode([stamp] * count, spec.pub, range(count), [now] * count)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(logio_topic(spec.proto, spec.app, spec.proc, spec.host) + data)
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(4096)
    if answer:
        raise RuntimeError(f"the server answered the publisher: {answer[:200]!r}")


def fetch_replays(
    conn: Connection, port: int, queries: list[str], repeats: int, expected: int
) -> None:
    """Worker: ``repeats`` rounds of one request per query in turn (each a
    ``follow=0`` replay of ``expected`` lines of publisher 0); answers with the runs
    of each query."""
    guarded(conn, _fetch_replays, port, queries, repeats, expected)


def _fetch_replays(
    conn: Connection, port: int, queries: list[str], repeats: int, expected: int
) -> None:
    runs: dict[str, list[dict[str, Any]]] = {query: [] for query in queries}
    for _ in range(repeats):
        for query in queries:
            runs[query].append(fetch_once(port, query, expected))
    conn.send(("done", runs))


def fetch_once(port: int, query: str, expected: int, timeout: float = 30.0) -> dict[str, Any]:
    """One replay request: milliseconds from sending it to the first and to the last
    complete line (record) and to the end of the response, then the lines checked for
    publisher 0's sequence numbers ``0 .. expected - 1`` in order."""
    reader = HttpLines(query, parse=False)
    buf = bytearray(RECV_BUFFER)
    view = memoryview(buf)
    received: list[bytes] = []
    first = last = ended = 0
    error = ""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = time.monotonic_ns()
        sock.sendall(reader.request)
        lines = 0
        while not reader.ended:
            try:
                got = sock.recv_into(buf)
            except TimeoutError:
                error = f"no end of the response in {timeout:.0f} s"
                break
            now = time.monotonic_ns()
            if not got:
                error = "connection closed before the final chunk"
                break
            received.append(bytes(view[:got]))
            reader.feed(buf, view, got, now)
            if reader.lines > lines:
                lines = reader.lines
                first = first or now
                last = now
            if reader.ended:
                ended = now
    check = HttpLines(query, parse=True)
    for data in received:
        buf[: len(data)] = data
        check.feed(buf, view, len(data), 0)
    seen = check.result({0: expected})

    def ms(when: int) -> float | None:
        return (when - sent) / 1e6 if when else None

    return {
        "error": error or reader.format_error or ("" if reader.status == 200 else "not 200"),
        "status": reader.status,
        "lines": reader.lines,
        "parsed": seen["lines"],
        "missing": seen["missing"],
        "reordered": seen["reordered"],
        "unparsed": seen["unparsed"],
        "notices": reader.notices,
        "dropped": reader.dropped,
        "ended": reader.ended,
        "bytes": sum(map(len, received)),
        "first_ms": ms(first),
        "last_ms": ms(last),
        "end_ms": ms(ended),
    }
