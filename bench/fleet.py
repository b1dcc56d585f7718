"""A fleet of small publishers: many connections, each sending a few lines a second, one
line per write, as a fleet of applications with a logging client each would.

One worker process drives a share of the fleet's connections on one epoll loop. Every
connection publishes at the same rate, open loop: line ``k`` of the connection in slot
``s`` (of ``total`` in the whole fleet) is due at ``start + (k * total + s) / (total *
rate)``, so the fleet's lines are evenly spread in time, and each carries that intended
time in its text (no coordinated omission: a line sent late is charged for it). A line
due is sent with one ``send()`` of its own; only when a connection's socket buffer is
full do its lines queue, and they go out together once it drains (still charged from
their intended times).

The worker sleeps with ``time.sleep`` (microseconds) between lines, not in ``epoll``
(whose timeout is whole milliseconds), and polls its sockets without waiting: for a
logio server's error line, a NATS server's PINGs (each answered with a PONG between two
messages), and writability of a connection that has lines queued.
"""

from __future__ import annotations

import select
import time
from collections import deque
from multiprocessing.connection import Connection

from . import nats
from .wire import MIN_TEXT, rfc3339
from .workers import Plan, PubSpec, guarded, publisher_socket, raise_nofile

PONG = -1
"""Stands in a connection's queue for a PONG, which is no line."""


def record_format(spec: PubSpec) -> tuple[bytes, bool]:
    """A ``%`` format of one of the publisher's lines in its protocol, to be filled with
    ``(seq, ts)``, or ``(stamp, seq, ts)`` if the second item says it takes a stamp:
    the same bytes as L{bench.wire.RecordEncoder} makes."""
    pad = b"x" * (spec.width - MIN_TEXT)
    text = b"pub=%03d " % spec.pub + b"seq=%010d ts=%019d " + pad
    if spec.proto == "seed":
        return b'{"time":"%s","raw":"' + text + b'\\n"}', True
    if spec.proto == "text":
        return text + b"\n", False
    if spec.proto == "nats":
        head = b"PUB %s %d\r\n" % (spec.channel, spec.width + 1)
        return head.replace(b"%", b"%%") + text + b"\n\r\n", False
    raise ValueError(f"a fleet publisher does not speak {spec.proto!r}")


class _Connection:
    """One publisher connection of the fleet."""

    def __init__(self, spec: PubSpec, port: int) -> None:
        self.spec = spec
        self.sock = publisher_socket(spec, port)
        self.sock.setblocking(False)
        self.format, self.stamped = record_format(spec)
        self.made = 0
        """Lines made (sent, or queued to be)."""
        self.sent = 0
        """Lines written whole to the socket."""
        self.out = bytearray()
        self.queued: deque[int] = deque()
        """The length of each line (or PONG) in ``out``, in order."""
        self.head_sent = 0
        """Bytes of the first queued item already written."""
        self.writable_wait = False
        self.pings = 0
        self.answer = b""
        """What the server wrote to this publisher (a logio error line), its start."""
        self.closed = False

    def queue(self, data: bytes, length: int) -> None:
        """Queue a line (``length`` its size) or a PONG (``length`` L{PONG})."""
        self.out += data
        self.queued.append(length)

    def write(self) -> bool:
        """Write what is queued, in one ``send``; whether some is left."""
        try:
            written = self.sock.send(self.out)
        except BlockingIOError:
            return True
        except OSError:
            self.closed = True
            self.out.clear()
            self.queued.clear()
            return False
        del self.out[:written]
        written += self.head_sent
        while self.queued:
            size = len(nats.PONG) if self.queued[0] == PONG else self.queued[0]
            if written < size:
                break
            written -= size
            if self.queued.popleft() != PONG:
                self.sent += 1
        self.head_sent = written
        return bool(self.out)


def publish_fleet(conn: Connection, port: int, specs: list[PubSpec], total: int) -> None:
    """Worker: connect the fleet's publishers ``specs`` (their ``pub`` is their slot,
    of ``total``) to ``port``; then publish as the L{Plan} says, ``rate`` lines/s each."""
    guarded(conn, _publish_fleet, port, specs, total)


def _publish_fleet(conn: Connection, port: int, specs: list[PubSpec], total: int) -> None:
    raise_nofile()
    pubs = [_Connection(spec, port) for spec in sorted(specs, key=lambda s: s.pub)]
    conn.send(("ready", {"publishers": len(pubs)}))
    plan: Plan = conn.recv()
    poller = select.epoll()
    by_fd = {}
    for pub in pubs:
        by_fd[pub.sock.fileno()] = pub
        poller.register(pub.sock.fileno(), select.EPOLLIN)
    late = _run(pubs, plan, total, poller, by_fd)
    poller.close()
    answers = [p.answer.decode(errors="replace") for p in pubs if p.answer]
    for pub in pubs:
        pub.sock.close()
    conn.send(
        (
            "done",
            {
                "published": {p.spec.pub: p.sent for p in pubs},
                "made": sum(p.made for p in pubs),
                "closed": sum(p.closed for p in pubs),
                "answers": answers[:3],
                "answered": len(answers),
                "late_ms": _quantiles_ms(late),
            },
        )
    )


def _run(
    pubs: list[_Connection],
    plan: Plan,
    total: int,
    poller: select.epoll,
    by_fd: dict[int, _Connection],
) -> list[float]:
    """Publish every line when it is due, until all are written or the deadline; how
    late (seconds) each line was made, a sample of one line in ten."""
    count = len(pubs)
    per_pub = round(plan.rate * (plan.stop - plan.start))
    events = count * per_pub
    slot_step = 1.0 / (total * plan.rate)
    round_step = total * slot_step
    offsets = [pub.spec.pub * slot_step for pub in pubs]
    backlog: set[_Connection] = set()
    sink = bytearray(1 << 16)
    stamp, stamp_at = b"", 0.0
    done = 0
    late: list[float] = []
    time.sleep(max(0.0, plan.start - time.monotonic()))
    while True:
        now = time.monotonic()
        if now >= plan.deadline:
            break
        if now - stamp_at >= 0.001:
            stamp, stamp_at = rfc3339(time.time()), now
        while done < events:
            line, index = divmod(done, count)
            due = plan.start + line * round_step + offsets[index]
            if due > now:
                break
            done += 1
            if not done % 10:
                late.append(time.monotonic() - due)
            pub = pubs[index]
            if pub.closed:
                continue
            ts = int(due * 1e9)
            data = pub.format % ((stamp, line, ts) if pub.stamped else (line, ts))
            pub.made += 1
            if pub.out:
                pub.queue(data, len(data))
                continue
            try:
                written = pub.sock.send(data)
            except BlockingIOError:
                written = 0
            except OSError:
                pub.closed = True
                continue
            if written == len(data):
                pub.sent += 1
                continue
            pub.queue(data[written:], len(data))
            pub.head_sent = written
            backlog.add(pub)
            poller.modify(pub.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
        for fd, mask in poller.poll(0):
            pub = by_fd[fd]
            if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                _read(pub, sink, poller)
            if pub.closed:
                backlog.discard(pub)
            elif pub.out and pub not in backlog:
                backlog.add(pub)
                poller.modify(fd, select.EPOLLIN | select.EPOLLOUT)
            elif mask & select.EPOLLOUT and pub in backlog and not pub.write():
                backlog.discard(pub)
                poller.modify(fd, select.EPOLLIN)
        if done >= events and not backlog:
            break
        if done < events:
            line, index = divmod(done, count)
            wake = plan.start + line * round_step + offsets[index]
            delay = wake - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 0.01) if backlog else delay)
        else:
            poller.poll(0.01)
    return late


def _quantiles_ms(late: list[float]) -> dict[str, float]:
    """The median, 99th percentile and most of how late lines were made, in ms."""
    if not late:
        return {}
    ordered = sorted(late)
    return {
        "p50": 1e3 * ordered[len(ordered) // 2],
        "p99": 1e3 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": 1e3 * ordered[-1],
    }


def _read(pub: _Connection, sink: bytearray, poller: select.epoll) -> None:
    """Read what the server wrote to a publisher: a NATS server's PINGs are queued to be
    answered; anything from logio is an error (kept); an end of stream closes the
    connection."""
    try:
        got = pub.sock.recv_into(sink)
    except BlockingIOError:
        return
    except OSError:
        got = 0
    if not got:
        pub.closed = True
        poller.unregister(pub.sock.fileno())
        return
    if pub.spec.proto == "nats":
        for _ in range(sink.count(b"PING\r\n", 0, got)):
            pub.queue(nats.PONG, PONG)
        if sink.find(b"-ERR", 0, got) >= 0 and len(pub.answer) < 200:
            pub.answer += bytes(sink[:got])
    elif len(pub.answer) < 200:
        pub.answer += bytes(sink[: min(got, 200)])
