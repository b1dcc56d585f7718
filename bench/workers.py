"""Load-generating worker processes: publishers and subscribers, apart from the server.

The orchestrator forks each worker with multiprocessing and talks to it over a Pipe. A
worker connects its sockets and answers ``("ready", info)``; it then receives a L{Plan}
(absolute times on the monotonic clock, which all processes share on Linux), runs it and
answers ``("done", results)``. An exception is sent back as ``("error", traceback)``.

Publishers either blast a prebuilt block of records as fast as the server reads them, or
publish open-loop at a fixed rate: line ``i`` is due at ``start + i / rate`` and carries
that intended time, so a stall anywhere is charged to the lines that waited (no coordinated
omission). Subscribers multiplex many connections on one epoll loop and read with
``recv_into`` into one large buffer.

History replays have workers of their own (L{bench.replays}).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import select
import selectors
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from . import nats
from .nats import NatsMessages
from .wire import (
    LINE_TEXT,
    HttpLines,
    RecordEncoder,
    RedisMessages,
    blast_buffer,
    logio_topic,
    rfc3339,
)

CTX = multiprocessing.get_context("fork")
RECV_BUFFER = 1 << 20
CONNECT_IN_FLIGHT = 128


@dataclass(frozen=True)
class PubSpec:
    """One publisher connection."""

    proto: str
    """``seed`` (JSON), ``text``, ``syslog`` (octet-counted RFC 5424), ``http`` (a
    streamed ``POST /publish`` on the subscriber port), ``redis`` or ``nats``."""
    app: str
    pub: int = 0
    proc: str = "p"
    host: str = "h"
    width: int = LINE_TEXT
    """Characters of log text per line, without its newline."""

    @property
    def channel(self) -> bytes:
        """The Redis channel or NATS subject standing for this topic."""
        return f"{self.app}.{self.proc}.{self.host}".encode()

    @property
    def topic(self) -> tuple[str, str, str]:
        return (self.app, self.proc, self.host)


@dataclass(frozen=True)
class SubSpec:
    """One subscriber connection."""

    proto: str
    """``http`` (logio), ``redis`` or ``nats``."""
    query: str
    """The HTTP query string, the Redis ``PSUBSCRIBE`` pattern or the NATS subject."""
    parse: bool = False
    """Parse every line's fields (sequence and latency) instead of only counting."""
    stall: bool = False
    """Read the response headers, then never read again."""
    throttle: float = 0.0
    """Read at most this many bytes per second (0: as fast as possible)."""
    rcvbuf: int = 0
    """SO_RCVBUF to set before connecting (0: the kernel's autotuning)."""
    pubs: tuple[int, ...] = ()
    """The publishers whose lines this subscriber gets (empty: all of them)."""
    flush: float = 0.0
    """Parsing: parse what arrived at least every this many seconds (0: the default).
    Arrival times are kept either way; many slow subscribers parse less often."""


@dataclass(frozen=True)
class Plan:
    """When to do what, in ``time.monotonic()`` seconds."""

    start: float
    window: tuple[float, float]
    """Subscribers count the lines that arrive in this window."""
    stop: float
    """Blast: stop sending. Paced: the end of the publishing period."""
    deadline: float
    """Nobody waits past this."""
    rate: float = 0.0
    """Paced lines per second per publisher; 0 means blast."""
    tick: float = 0.0
    """Paced: the shortest sleep between sends (0: wake for every line)."""
    exact: bool = False
    """Blast: subscribers go on reading after the window until every line published
    arrived or was reported dropped (or the deadline), as paced loads always do."""


def raise_nofile() -> None:
    """Raise the open-files soft limit to the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def guarded(conn: Connection, body: Callable[..., None], *args: Any) -> None:
    try:
        body(conn, *args)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
# Publishers


def publisher_socket(spec: PubSpec, port: int) -> socket.socket:
    """A publisher's connection to ``port``, without Nagle, its opening sent: NATS's
    CONNECT, logio's topic, nothing for Redis."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if spec.proto == "nats":
        sock.sendall(nats.CONNECT)
    elif spec.proto != "redis":
        sock.sendall(logio_topic(spec.proto, spec.app, spec.proc, spec.host))
    return sock


class _Publisher:
    def __init__(self, spec: PubSpec, port: int) -> None:
        self.spec = spec
        self.sock = publisher_socket(spec, port)
        self.encoder = RecordEncoder(spec.proto, spec.channel, spec.topic, spec.width)
        self.sent = 0
        self.replies = 0
        self.pings = 0
        """NATS: the server's PINGs not answered yet."""
        self.out = bytearray()
        self.offset = 0
        self.done = False


def publish(
    conn: Connection, port: int, specs: list[PubSpec], records: int, http_port: int = 0
) -> None:
    """Worker: run publishers ``specs`` against ``port`` (``http`` ones against
    ``http_port``); blocks are ``records`` lines."""
    guarded(conn, _publish, port, specs, records, http_port)


def _publish(
    conn: Connection, port: int, specs: list[PubSpec], records: int, http_port: int
) -> None:
    pubs = [_Publisher(spec, http_port if spec.proto == "http" else port) for spec in specs]
    # Made before the start: for many publishers, making them takes seconds.
    blocks = {
        id(p): memoryview(
            blast_buffer(
                p.spec.proto, p.spec.pub, records, p.spec.channel, p.spec.topic, p.spec.width
            )
        )
        for p in pubs
    }
    conn.send(("ready", {"publishers": len(pubs)}))
    plan: Plan = conn.recv()
    for pub in pubs:
        pub.sock.setblocking(False)
    if plan.rate:
        _paced(pubs, plan)
    else:
        _blast(pubs, plan, records, blocks)
    _drain_replies(pubs, plan)
    for pub in pubs:
        pub.sock.close()
    conn.send(("done", {"published": {p.spec.pub: p.sent for p in pubs}}))


def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _answers(pub: _Publisher, data: bytes | bytearray, got: int) -> None:
    """Account for what a publisher's server sent it: Redis's replies to its
    PUBLISHes; NATS's PINGs (answered with a PONG at the next message's start)."""
    if pub.spec.proto == "nats":
        pub.pings += data.count(b"PING\r\n", 0, got)
    else:
        pub.replies += data.count(b"\n", 0, got)


def _pong(pub: _Publisher) -> bool:
    """Answer the NATS server's PINGs, between two whole messages; whether one is
    still to be sent."""
    if pub.pings:
        pub.out += nats.PONG * pub.pings
        pub.pings = 0
    if pub.out:
        try:
            del pub.out[: pub.sock.send(pub.out)]
        except BlockingIOError:
            pass
    return bool(pub.out)


def _blast(pubs: list[_Publisher], plan: Plan, records: int, views: dict[int, memoryview]) -> None:
    """Send each publisher's block (``views``, by the publisher's id) again and again,
    whole blocks, until the plan's stop."""
    sink = bytearray(1 << 16)
    sel = selectors.DefaultSelector()
    answered = ("redis", "nats")
    for pub in pubs:
        reads = selectors.EVENT_READ if pub.spec.proto in answered else 0
        sel.register(pub.sock, selectors.EVENT_WRITE | reads, pub)
    _sleep_until(plan.start)
    active = len(pubs)
    while active and time.monotonic() < plan.deadline:
        stopping = time.monotonic() >= plan.stop
        for key, mask in sel.select(0.05):
            pub = key.data
            if mask & selectors.EVENT_READ:
                _answers(pub, sink, pub.sock.recv_into(sink))
            if not mask & selectors.EVENT_WRITE or pub.done:
                continue
            if not pub.offset and (pub.pings or pub.out) and _pong(pub):
                continue
            if stopping and not pub.offset:
                pub.done = True
                active -= 1
                if pub.spec.proto in answered:
                    sel.modify(pub.sock, selectors.EVENT_READ, pub)
                else:
                    sel.unregister(pub.sock)
                continue
            view = views[id(pub)]
            try:
                pub.offset += pub.sock.send(view[pub.offset :])
            except BlockingIOError:
                continue
            if pub.offset == len(view):
                pub.offset = 0
                pub.sent += records
    sel.close()


def _paced(pubs: list[_Publisher], plan: Plan) -> None:
    period_ns = 1e9 / plan.rate
    start_ns = int(plan.start * 1e9)
    total = round(plan.rate * (plan.stop - plan.start))
    sel = selectors.DefaultSelector()
    for pub in pubs:
        sel.register(pub.sock, selectors.EVENT_WRITE, pub)
    stamp, stamp_at = b"", 0.0
    listened = 0.0
    sink = bytearray(1 << 16)
    _sleep_until(plan.start)
    while time.monotonic() < plan.deadline:
        now = time.monotonic()
        if now - stamp_at >= 0.001:
            stamp, stamp_at = rfc3339(time.time()), now
        if now - listened >= 0.5:
            listened = now
            _listen(pubs, sink)
        due = min(total, int((now - plan.start) * plan.rate) + 1)
        blocked = False
        for pub in pubs:
            if due > pub.sent:
                seqs = range(pub.sent, due)
                times = [start_ns + int(i * period_ns) for i in seqs]
                pub.out += pub.encoder.encode([stamp] * len(seqs), pub.spec.pub, seqs, times)
                pub.sent = due
            if pub.out:
                try:
                    del pub.out[: pub.sock.send(pub.out)]
                except BlockingIOError:
                    pass
                blocked = blocked or bool(pub.out)
        if due >= total and not blocked:
            break
        wake = max(plan.start + due / plan.rate, time.monotonic() + plan.tick)
        if blocked:
            sel.select(max(0.0, wake - time.monotonic()))
        else:
            _sleep_until(wake)
    sel.close()


def _listen(pubs: list[_Publisher], sink: bytearray) -> None:
    """Read what the servers of paced Redis and NATS publishers sent them (their
    whole messages queued in ``out``, so a PONG may follow)."""
    for pub in pubs:
        if pub.spec.proto not in ("redis", "nats"):
            continue
        while True:
            try:
                got = pub.sock.recv_into(sink)
            except BlockingIOError:
                break
            if not got:
                break
            _answers(pub, sink, got)
        if pub.pings:
            pub.out += nats.PONG * pub.pings
            pub.pings = 0


def _drain_replies(pubs: list[_Publisher], plan: Plan) -> None:
    """Redis answers every PUBLISH: read the answers so that all were processed. NATS
    answers a PING after every command before it: send one, wait for its PONG."""
    sink = bytearray(1 << 16)
    end = min(plan.deadline, time.monotonic() + 10)
    for pub in pubs:
        if pub.spec.proto != "nats":
            continue
        pub.sock.setblocking(True)
        pub.sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            pub.sock.sendall(bytes(pub.out) + nats.PONG * pub.pings + nats.PING)
            heard = b""
            while nats.PONG not in heard:
                answer = pub.sock.recv(1 << 16)
                if not answer:
                    break
                heard = heard[-8:] + answer
        except (TimeoutError, OSError):
            continue
    waiting = [p for p in pubs if p.spec.proto == "redis"]
    for pub in waiting:
        pub.sock.setblocking(True)
        while pub.replies < pub.sent and time.monotonic() < end:
            pub.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                got = pub.sock.recv_into(sink)
            except TimeoutError:
                break
            if not got:
                break
            pub.replies += sink.count(b"\n", 0, got)


# ---------------------------------------------------------------------------------------
# Subscribers


class _Subscriber:
    def __init__(self, spec: SubSpec) -> None:
        self.spec = spec
        self.reader: HttpLines | RedisMessages | NatsMessages
        if spec.proto == "redis":
            self.reader = RedisMessages(spec.query, spec.parse)
        elif spec.proto == "nats":
            self.reader = NatsMessages(spec.query, spec.parse)
        else:
            self.reader = HttpLines(spec.query, spec.parse)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if spec.rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, spec.rcvbuf)
        self.sock.setblocking(False)
        self.error = ""
        self.closed = False
        self.resume_at = 0.0
        if spec.flush and not isinstance(self.reader, RedisMessages):
            self.reader.flush_ns = int(spec.flush * 1e9)
        self.limit = 1 << 16 if spec.throttle else RECV_BUFFER
        self.window_start = 0
        self.expected = 0
        """Lines published to this subscriber, once the publishers are done."""

    def expect(self, published: dict[int, int]) -> dict[int, int]:
        """What was published to this subscriber, of all that was published."""
        mine = published
        if self.spec.pubs:
            mine = {pub: published.get(pub, 0) for pub in self.spec.pubs}
        self.expected = sum(mine.values())
        return mine


def subscribe(conn: Connection, port: int, specs: list[SubSpec]) -> None:
    """Worker: connect subscribers ``specs`` to ``port``, then count what arrives."""
    guarded(conn, _subscribe, port, specs)


def _connect_all(subs: list[_Subscriber], port: int, sel: selectors.BaseSelector) -> None:
    """Connect every subscriber and read its response headers, a bounded number at once
    so that the server's accept backlog never overflows."""
    buf = bytearray(RECV_BUFFER)
    view = memoryview(buf)
    pending = deque(subs)
    in_flight = 0
    finished = 0
    deadline = time.monotonic() + 60 + len(subs) / 200
    while finished < len(subs) and time.monotonic() < deadline:
        while pending and in_flight < CONNECT_IN_FLIGHT:
            sub = pending.popleft()
            sub.sock.connect_ex(("127.0.0.1", port))
            sel.register(sub.sock, selectors.EVENT_WRITE, sub)
            in_flight += 1
        for key, mask in sel.select(1.0):
            sub = key.data
            if mask & selectors.EVENT_WRITE:
                error = sub.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if not error:
                    sub.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sub.sock.send(sub.reader.request)
                    sel.modify(sub.sock, selectors.EVENT_READ, sub)
                    continue
                sub.error = f"connect: {os.strerror(error)}"
            else:
                got = sub.sock.recv_into(buf)
                if got:
                    sub.reader.feed(buf, view, got, time.monotonic_ns())
                    if not sub.reader.open:
                        continue
                if not got:
                    sub.error = "closed before the response headers"
                elif sub.reader.status != 200:
                    sub.error = f"HTTP status {sub.reader.status}"
                elif isinstance(sub.reader, HttpLines) and sub.reader.format_error:
                    sub.error = sub.reader.format_error
            in_flight -= 1
            finished += 1
            if sub.error or sub.spec.stall:
                sel.unregister(sub.sock)
    for sub in subs:
        if not sub.reader.open and not sub.error:
            sub.error = "no response headers in time"


def _subscribe(conn: Connection, port: int, specs: list[SubSpec]) -> None:
    raise_nofile()
    subs = [_Subscriber(spec) for spec in specs]
    with selectors.DefaultSelector() as sel:
        _connect_all(subs, port, sel)
    failed = [s.error for s in subs if s.error]
    conn.send(("ready", {"open": len(subs) - len(failed), "failed": failed[:5]}))
    plan: Plan = conn.recv()
    poller = select.epoll()
    poller.register(conn.fileno(), select.EPOLLIN)
    live = [s for s in subs if not s.error and not s.spec.stall]
    by_fd = {s.sock.fileno(): s for s in live}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    published: dict[int, int] | None = None
    window: list[float] = []
    window_lines: list[int] = [0] * len(subs)
    throttled: list[_Subscriber] = []
    buf = bytearray(RECV_BUFFER)
    view = memoryview(buf)
    while True:
        now = time.monotonic()
        wake = plan.deadline
        if len(window) < 2:
            if now >= plan.window[len(window)]:
                window.append(now)
                sign = 1 if len(window) == 2 else -1
                for i, sub in enumerate(subs):
                    window_lines[i] += sign * sub.reader.lines
            if len(window) < 2:
                wake = plan.window[len(window)]
        if now >= plan.deadline or (not plan.rate and not plan.exact and len(window) == 2):
            break
        if published is not None and all(
            s.closed or s.reader.lines + s.reader.pending + s.reader.dropped >= s.expected
            for s in live
        ):
            break
        for sub in throttled:
            if now >= sub.resume_at:
                poller.register(sub.sock.fileno(), select.EPOLLIN)
            wake = min(wake, sub.resume_at)
        throttled = [sub for sub in throttled if now < sub.resume_at]
        events = poller.poll(min(max(0.0, wake - now), 0.25))
        now_ns = time.monotonic_ns()
        for fd, _ in events:
            ready = by_fd.get(fd)
            if ready is None:
                message = conn.recv()
                if message[0] == "expect":
                    published = message[1]
                    for sub in subs:
                        sub.expect(published)
                continue
            got = ready.sock.recv_into(buf, ready.limit)
            if not got:
                ready.closed = True
                poller.unregister(fd)
                continue
            ready.reader.feed(buf, view, got, now_ns)
            if isinstance(ready.reader, NatsMessages) and ready.reader.reply:
                ready.sock.setblocking(True)
                ready.sock.sendall(ready.reader.reply)
                ready.sock.setblocking(False)
                ready.reader.reply = b""
            if ready.spec.throttle:
                ready.resume_at = time.monotonic() + got / ready.spec.throttle
                poller.unregister(fd)
                throttled.append(ready)
    poller.close()
    streams = []
    for i, sub in enumerate(subs):
        result = sub.reader.result(sub.expect(published or {}))
        result.update(
            {
                "expected": sub.expected,
                "error": sub.error,
                "closed": sub.closed,
                "stall": sub.spec.stall,
                "throttle": sub.spec.throttle,
                "window_lines": window_lines[i] if len(window) == 2 else 0,
            }
        )
        streams.append(result)
        sub.sock.close()
    span = window[1] - window[0] if len(window) == 2 else 0.0
    conn.send(("done", {"streams": streams, "window_seconds": span}))
