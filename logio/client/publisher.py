# -*- test-case-name: tests.test_client_handler -*-
"""
The sending half of the client: a bounded queue drained by one daemon thread.

The application's threads only call L{Publisher.put}, which appends to a queue
under a lock and returns; it never touches the network. One daemon thread takes
records off the queue in batches, encodes them in the seed JSON protocol and
writes them to the server. When the queue is full the oldest records are
dropped and counted; the next batch sent starts with a record that says how
many were lost. A connection that fails is redialled with exponential backoff
and jitter, and the records whose bytes did not reach the kernel in full are
put back at the front of the queue, so nothing is lost silently.

No Twisted and no reactor: plain threads and sockets, so any Python program
can publish.
"""

from __future__ import annotations

import json
import random
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from itertools import accumulate

from logio.client.answers import lastWords, toStderr
from logio.client.lifecycle import register
from logio.client.records import (
    RECORD_OVERHEAD,
    SeedRecords,
    drop_notice,
    truncate,
    wire,
)
from logio.client.url import PublishURL, tlsContext

#: The first and the longest wait between connection attempts, in seconds.
BACKOFF_MIN = 0.1
BACKOFF_MAX = 30.0
#: The most a TLS connection is given in one send (one TLS record).
TLS_SLICE = 16384

#: A connection that lived this long resets the backoff to L{BACKOFF_MIN}.
_HEALTHY_SECONDS = 1.0


class Publisher:
    """
    Publish records to one logio server from any number of threads.

    @ivar flush_timeout: how long L{close} (and so the exit flush) waits for
        queued records to be sent, in seconds.
    @ivar dropped_total: how many records the full queue has dropped, ever.
    @ivar refusal: what the server last said when it refused the connection
        (a bad token, a port that is not a logio publisher port), or C{None}.
    @ivar rejected: how many records were written on connections the server
        then refused: lost.
    @ivar report: called with a one-line message when the connection fails or
        comes back, or the server says something; writes to stderr unless
        replaced.
    """

    def __init__(
        self,
        target: PublishURL,
        *,
        max_records: int = 10000,
        max_bytes: int = 1024 * 1024,
        max_record_bytes: int = 60 * 1024,
        flush_timeout: float = 2.0,
        write_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        backoff_max: float = BACKOFF_MAX,
        report: Callable[[str], None] | None = None,
    ) -> None:
        """
        @param max_records: the most records queued; past it the oldest drop.
        @param max_bytes: the most bytes of text queued; past it the oldest
            drop.
        @param max_record_bytes: the longest record sent; longer ones are cut
            and marked C{[truncated]}.
        @param write_timeout: how long one write may wait for a server that
            does not read before the connection is given up and redialled.
        @param connect_timeout: how long connecting (and the TLS handshake)
            may take.
        @param backoff_max: the longest wait between connection attempts.

        @raise ValueError: a limit is not positive, or the CA file of a
            C{logios://} URL cannot be loaded.
        """
        for name, value in [
            ("max_records", max_records),
            ("max_bytes", max_bytes),
            ("max_record_bytes", max_record_bytes),
            ("flush_timeout", flush_timeout),
            ("write_timeout", write_timeout),
            ("connect_timeout", connect_timeout),
            ("backoff_max", backoff_max),
        ]:
            if not value > 0:
                raise ValueError(f"logio {name} must be positive, not {value!r}")
        if not 256 <= max_record_bytes <= max_bytes - RECORD_OVERHEAD:
            raise ValueError("logio max_record_bytes must be at least 256 and fit in max_bytes")
        self.target = target
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.max_record_bytes = max_record_bytes
        self.flush_timeout = flush_timeout
        self.write_timeout = write_timeout
        self.connect_timeout = connect_timeout
        self.backoff_max = backoff_max
        self.report: Callable[[str], None] = report or toStderr
        self._tls = tlsContext(target) if target.tls else None
        topic = {"app": target.app, "proc": target.proc, "host": target.host}
        if target.token is not None:
            topic["token"] = target.token
        self._topic = json.dumps(
            topic,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        self._closed = False
        self.refusal: str | None = None
        self.rejected = 0
        # Records written on the connection open now, and until when close()
        # waits for the server to confirm them (see _confirm).
        self._sent_here = 0
        self._confirm_until: float | None = None
        # Records put after close(): not sent, reported once.
        self._late = 0
        self._reset()
        register(self)
        self._start()

    def _reset(self) -> None:
        """
        Start with an empty queue, no connection and no sending thread.
        """
        # Reentrant: a signal handler or a finalizer that logs can run put()
        # while this thread is inside put() already.
        self._lock = threading.RLock()
        self._has_records = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        # Notified when the queue shrinks or the server becomes unreachable:
        # what put(wait=True) waits for.
        self._room = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._queue: deque[tuple[float, str]] = deque()
        self._queued_bytes = 0
        # Records dropped since the last drop notice was taken for sending.
        self._dropped = 0
        self.dropped_total = 0
        # Every record put counts once in _accepted, and once in _settled when
        # it has been written or dropped: flush waits for the two to meet.
        self._accepted = 0
        self._settled = 0
        # _settled when a drain last gave up: no second wait without progress.
        self._gave_up_at = -1
        self._idle = False
        # Whether the last attempt to connect failed (and none has worked
        # since): the server is away, and put(wait=True) does not wait.
        self._away = False
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._poller: select.poll | None = None
        self._records = SeedRecords(self.max_record_bytes)

    def _sending(self) -> bool:
        """
        Whether the sending thread is running.
        """
        return self._thread is not None and self._thread.is_alive()

    def put(self, created: float, raw: str, *, wait: bool = False) -> None:
        """
        Queue one record for sending; by default never blocks on the network.

        @param created: the record's time, in seconds since the epoch.
        @param raw: the record's text; a final newline is added if missing.
        @param wait: when the queue is full, wait for the sending thread to
            make room instead of dropping the oldest, unless the server is
            away (the last attempt to connect failed): then the oldest are
            dropped as usual, so a dead server cannot block the caller
            forever.  For C{logio pub}, whose input can wait; never for
            logging, which must not block the application.
        """
        if not raw.endswith("\n"):
            raw += "\n"
        raw = truncate(raw, self.max_record_bytes - RECORD_OVERHEAD)
        with self._lock:
            if self._closed:
                self._late += 1
                late = self._late
            else:
                late = 0
        if late == 1:
            # Once: this happens at exit, e.g. from an atexit function that
            # was registered before the handler and so runs after its flush.
            self.report(
                f"logio: a record was logged after the handler for "
                f"{self.target.describe()} was closed; it is not sent (nor any later one)"
            )
        if late:
            return
        cost = len(raw) + RECORD_OVERHEAD
        with self._lock:
            queue = self._queue
            if wait:
                while (
                    (len(queue) >= self.max_records or self._queued_bytes + cost > self.max_bytes)
                    and not (self._away or self._closed)
                    and self._sending()
                ):
                    # Woken when a batch goes; the timeout only re-checks
                    # that the sending thread is still there.
                    self._room.wait(1.0)
            queue.append((created, raw))
            self._queued_bytes += cost
            self._accepted += 1
            while len(queue) > self.max_records or self._queued_bytes > self.max_bytes:
                self._queued_bytes -= len(queue.popleft()[1]) + RECORD_OVERHEAD
                self._dropped += 1
                self.dropped_total += 1
                self._settled += 1
            if self._idle:
                self._idle = False
                self._has_records.notify()

    def _start(self) -> None:
        """
        Start the sending thread.  Done when the publisher is made (and in
        a forked child), never from put(): starting a thread waits for it,
        and code the new thread runs (a finalizer that logs) could then wait
        for the logging call that is starting it.
        """
        thread = threading.Thread(target=self._run, name="logio publisher", daemon=True)
        self._thread = thread
        thread.start()

    @property
    def pending(self) -> int:
        """
        How many records were put but are neither sent nor dropped yet.
        """
        with self._lock:
            return self._accepted - self._settled

    def drain(self, timeout: float) -> int:
        """
        Wait until every record put so far is sent or dropped, or until
        C{timeout} seconds pass.

        @return: how many of those records were still not sent.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._accepted
            if self._settled == self._gave_up_at:
                # The last wait timed out and nothing moved since (the
                # server is away): do not wait again, as close() after
                # flush() would.
                return max(target - self._settled, 0)
            while self._settled < target and self._thread is not None and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._gave_up_at = self._settled
                    break
                self._progress.wait(remaining)
            return max(target - self._settled, 0)

    def close(self, timeout: float | None = None) -> int:
        """
        Send what is queued (waiting at most C{timeout}, by default
        L{flush_timeout}), then stop; later records are ignored.

        @return: how many records were not sent.
        """
        wait = self.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        unsent = self.drain(wait)
        with self._lock:
            if self._closed:
                return unsent + self.rejected
            self._closed = True
            if not unsent:
                # Everything is written: have the server confirm it.
                self._confirm_until = deadline
            self._stop.set()
            self._has_records.notify_all()
            self._room.notify_all()
            thread, sock = self._thread, self._sock
        if thread is not None:
            thread.join(max(deadline - time.monotonic(), 0.1))
            if thread.is_alive() and sock is not None:
                # A write blocked on a server that does not read: wake it.
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return unsent + self.rejected

    def _after_fork(self) -> None:
        """
        In a forked child: forget the parent's queue, connection and thread.
        The parent still sends its own records; the child connects anew.
        """
        sock = self._sock
        self._reset()
        if sock is not None:
            # Only this process's descriptor: no shutdown, which would end the
            # parent's connection too.
            sock.close()
        if not self._closed:
            self._start()

    # The sending thread from here on.

    def _run(self) -> None:
        """
        Connect, send batches, and redial with backoff until closed.
        """
        delay = BACKOFF_MIN
        connected_at = 0.0
        while self._wait_for_records():
            try:
                if self._sock is not None and not self._peer_alive():
                    delay = self._lost(connected_at, delay)
                    continue
                fresh = self._sock is None
                if fresh:
                    error = self._connect()
                    if error is not None:
                        if not self._away:
                            self._set_away(True)
                            self.report(
                                f"logio: cannot connect to {self.target.describe()}: "
                                f"{error}; keeping records and retrying"
                            )
                        delay = self._pause(delay)
                        continue
                    if self._away:
                        self.report(f"logio: connected to {self.target.describe()} again")
                        self._set_away(False)
                    connected_at = time.monotonic()
                if not self._send_batch(fresh):
                    delay = self._lost(connected_at, delay)
            except Exception as e:  # a bug here must not end the sending
                self.report(f"logio: internal error, reconnecting: {e!r}")
                self._disconnect()
                delay = self._pause(delay)
        if self._sock is not None and self._confirm_until is not None:
            self._confirm(self._confirm_until)
        self._disconnect()

    def _confirm(self, deadline: float) -> None:
        """
        At close: end the stream (half-close) and read until the server
        closes its side too, until C{deadline} at most.  A logio server that
        took the stream closes without a word; one that refused it said why
        (see L{_peer_alive}), and the records of this connection are lost.
        A TLS stream cannot be half-closed: it is not confirmed.
        """
        sock, poller = self._sock, self._poller
        assert sock is not None and poller is not None
        if isinstance(sock, ssl.SSLSocket):
            return
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        remaining = deadline - time.monotonic()
        if remaining > 0 and poller.poll(remaining * 1000):
            try:
                said = sock.recv(4096)
            except OSError:
                return
            if said:
                self._heard(said, sock)

    def _set_away(self, away: bool) -> None:
        """
        Note whether the server can be reached (only this thread writes
        C{_away}); once it cannot, callers waiting for room stop waiting
        and the oldest records drop.
        """
        with self._lock:
            self._away = away
            if away:
                self._room.notify_all()

    def _pause(self, delay: float) -> float:
        """
        Wait about C{delay} seconds (with jitter) unless closed meanwhile.

        @return: the next, doubled, delay.
        """
        self._stop.wait(min(delay * random.uniform(1.0, 1.5), self.backoff_max))
        return min(delay * 2, self.backoff_max)

    def _lost(self, connected_at: float, delay: float) -> float:
        """
        The connection failed: close it. After a healthy connection redial at
        once; after a short-lived one back off, so a server that accepts and
        closes at once is not hammered.

        @return: the next delay.
        """
        self._disconnect()
        if time.monotonic() - connected_at >= _HEALTHY_SECONDS:
            return BACKOFF_MIN
        return self._pause(delay)

    def _wait_for_records(self) -> bool:
        """
        Sleep until there is something to send; C{False} once closed.
        """
        with self._lock:
            while not self._queue and not self._stop.is_set():
                self._idle = True
                self._has_records.wait()
            self._idle = False
            return not self._stop.is_set()

    def _connect(self) -> str | None:
        """
        Open a connection to the server.

        @return: C{None}, or what went wrong.
        """
        address = self.target.address
        try:
            if isinstance(address, str):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.connect_timeout)
                try:
                    sock.connect(address)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection(address, timeout=self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if self._tls is not None:
                    try:
                        sock = self._tls.wrap_socket(sock, server_hostname=address[0])
                    except BaseException:
                        sock.close()
                        raise
        except (OSError, UnicodeError) as e:
            return str(e) or e.__class__.__name__
        sock.settimeout(self.write_timeout)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        with self._lock:
            self._sock, self._poller = sock, poller
            self._sent_here = 0
        return None

    def _disconnect(self) -> None:
        """
        Close the connection, if there is one.
        """
        with self._lock:
            sock, self._sock, self._poller = self._sock, None, None
        if sock is not None:
            sock.close()

    def _peer_alive(self) -> bool:
        """
        Whether the server still has the connection open. The server sends
        nothing unless it is about to close (an error line), so anything to
        read means the connection is over: say what the server said.
        """
        sock, poller = self._sock, self._poller
        assert sock is not None and poller is not None
        if not poller.poll(0):
            return True
        sock.setblocking(False)
        try:
            said = sock.recv(4096)
        except (ssl.SSLWantReadError, BlockingIOError):
            return True  # TLS housekeeping (session tickets), no data
        except OSError:
            return False
        finally:
            sock.settimeout(self.write_timeout)
        self._heard(said, sock)
        return False

    def _heard(self, said: bytes, sock: socket.socket) -> None:
        """
        The server said C{said} (perhaps nothing) as it closed the
        connection: report why (see L{lastWords}).
        """
        message, refused = lastWords(said, self.target.describe(), isinstance(sock, ssl.SSLSocket))
        if refused:
            assert message is not None
            self._refused(message)
        elif message is not None:
            self.report(message)

    def _refused(self, message: str) -> None:
        """
        The server refused the connection, saying C{message}: remember it,
        and report it once however often it is said again.
        """
        with self._lock:
            self.rejected += self._sent_here
            self._sent_here = 0
        if message != self.refusal:
            self.refusal = message
            self.report(message)

    def _send_batch(self, fresh: bool) -> bool:
        """
        Take the queue's records and write them, the topic first on a fresh
        connection and a drop notice first if records were dropped.

        @return: whether the whole batch was written.
        """
        with self._lock:
            # All of it: the queue is bounded, and while the application
            # holds the GIL every round trip of this thread is slow.
            records = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            dropped, self._dropped = self._dropped, 0
            self._room.notify_all()
        texts = [self._records.record(created, raw) for created, raw in records]
        head = [self._topic] if fresh else []
        if dropped:
            head.append(self._records.record(time.time(), drop_notice(dropped)))
        data = memoryview(wire("".join(head + texts)))
        written = 0
        sock = self._sock
        assert sock is not None
        # A TLS send that times out says nothing about how much of a large
        # buffer it encrypted and passed on: send at most one TLS record's
        # worth at a time, so at most that much is in doubt.
        step = TLS_SLICE if isinstance(sock, ssl.SSLSocket) else len(data)
        try:
            while written < len(data):
                written += sock.send(data[written : written + step])
        except OSError:
            pass
        if written == len(data):
            head_written, sent = True, len(records)
        else:
            # What reached the kernel in full counts as sent; the rest goes back.
            ends = list(accumulate(len(wire(text)) for text in head + texts))
            head_written = not head or ends[len(head) - 1] <= written
            sent = sum(1 for end in ends[len(head) :] if end <= written)
        with self._lock:
            if not head_written:
                self._dropped += dropped
            self._settled += sent
            self._sent_here += sent
            if sent < len(records):
                self._put_back(records[sent:])
            self._progress.notify_all()
        return written == len(data)

    def _put_back(self, records: list[tuple[float, str]]) -> None:
        """
        Return unsent records to the front of the queue; if that overfills
        it, they are the oldest and are dropped (and counted) first.
        """
        queue = self._queue
        queue.extendleft(reversed(records))
        self._queued_bytes += sum(len(raw) + RECORD_OVERHEAD for _, raw in records)
        while len(queue) > self.max_records or self._queued_bytes > self.max_bytes:
            self._queued_bytes -= len(queue.popleft()[1]) + RECORD_OVERHEAD
            self._dropped += 1
            self.dropped_total += 1
            self._settled += 1
