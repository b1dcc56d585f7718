# -*- test-case-name: tests.test_store -*-
"""
The durable store (C{--store DIR}): every record is kept on disk, in an
SQLite database in WAL mode, so that a restart (even after C{kill -9})
forgets nothing and ids go on where they were.

One row per published batch: its first sequence number, its topic, the
times of its oldest and newest records, and its records packed in one value
(L{logio.packing}).  A
batch is numbered, kept in memory (the newest records, as without a
store, in a L{History} ring that replays them) and packed at once, so
that its records die with the ring as without a store (records kept
alive for the writer cost the reactor a fifth of its speed); the packed
batches of the last tenth of a second are then written in one transaction
by a writer thread, so the reactor never waits for the disk.

The store's id is the instant it was created, in milliseconds: it is the
first part of every event id (C{<store>-<seq>}), so an id of another store
is told apart, and one of this store stays good across restarts.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections import deque
from datetime import datetime
from typing import Any, Callable, Iterator, Optional, Union

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from logio.history import History
from logio.interfaces import IFilters, IHistory, Replay, Run
from logio.packing import pack, unpack
from logio.stats import TopicInfo
from logio.storedb import DATABASE, openDatabase
from logio.storeread import Reader
from logio.timerange import TimeRange
from logio.topic import Record, Topic, formatEpoch

#: Seconds between two writes: what a crash may lose at most, about.
FLUSH_INTERVAL = 0.1
#: The most batches one statement writes (a statement binds at most 32766
#: values).
ROWS_A_STATEMENT = 1000
_ROW = "(?, ?, ?, ?, ?, ?, ?)"
#: Bytes of records waiting for the writer at most; beyond, the newest are
#: not stored (and counted): a stalled disk never grows memory unbounded.
MAX_PENDING_BYTES = 64 * 1024 * 1024
#: What a pruning leaves of C{retainBytes}: room for the next writes, so
#: that not every write prunes.
PRUNE_TO = 0.9
#: Seconds between two looks for records older than C{retainAge}.
AGE_CHECK_INTERVAL = 60.0
#: Seconds between two log lines about one cause of failure.
FAILURE_LOG_INTERVAL = 60.0
#: The most records a C{tail} takes from disk: they are held until the
#: newest are found.
MAX_DISK_TAIL = 100_000

#: What the reactor hands the writer: C{(first seq, topic, count, size,
#: packed records, oldest time, newest time)}.
_Batch = tuple[int, Topic, int, int, bytes, str, str]


@implementer(IHistory)
class Store(Service):
    """
    An L{IHistory} on disk: see the module docstring.

    @ivar recovered: How many records the store held when it was opened.
    @ivar unstored: Records not stored: the writer was too far behind, or
        the disk failed.
    """

    log = Logger()

    def __init__(
        self,
        directory: str,
        ring: History,
        reactor: IReactorTime,
        retainBytes: int = 1 << 30,
        retainAge: float = 7 * 86400.0,
    ) -> None:
        """
        Open the store in C{directory} and read what it holds.

        @param ring: Where the newest records are kept in memory for
            replay; its bounds are C{--history}'s.
        @param retainBytes: The most bytes the records may take on disk:
            beyond, the oldest go (the file keeps its size: SQLite reuses
            the pages they leave).
        @param retainAge: Seconds a record is kept, by its time.
        @raise StoreError: If the store cannot be opened.
        """
        self.directory = directory
        self.retainBytes = retainBytes
        self.retainAge = retainAge
        #: Records removed by the retention bounds, this run.
        self.pruned = 0
        self._ageChecked = -AGE_CHECK_INTERVAL
        self._connection, self.epoch = openDatabase(directory)
        self._ring = ring
        self._reactor = reactor
        self._pending: list[_Batch] = []
        self._pendingBytes = 0
        self._topics: dict[Topic, int] = {}
        self._queue: queue.Queue[Optional[tuple[float, list[_Batch]]]] = queue.Queue()
        self._writer: Optional[threading.Thread] = None
        self._reader: Optional[sqlite3.Connection] = None
        self._flusher = LoopingCall(self.flush)
        self._flusher.clock = reactor
        self.unstored = 0
        self.stored = 0
        #: When each flush not written yet was handed to the writer.
        self._inFlight: deque[float] = deque()
        #: The time of the oldest record on disk, as the writer last saw it.
        self._oldestTime: Optional[str] = None
        #: When each cause of failure was last logged.
        self._failuresLogged: dict[str, float] = {}
        #: The records on disk of each topic, and the time of its newest.
        self._stored: dict[Topic, tuple[int, str]] = {}
        row = self._connection.execute(
            "SELECT MAX(first + count), SUM(count) FROM batches"
        ).fetchone()
        ring.next = row[0] or 1
        self.recovered = row[1] or 0
        #: Called with a topic and a count for each batch held from before
        #: this run: returns the batch's owner (the broker sets it).
        self.holder: Callable[[Topic, int, str], Any] = lambda topic, count, last: _Owner(topic)

    # IHistory, in memory: the ring holds the newest records.

    @property
    def next(self) -> int:
        return self._ring.next

    @property
    def oldest(self) -> int:
        return self._ring.oldest

    @property
    def records(self) -> int:
        return self._ring.records

    @property
    def bytes(self) -> int:
        return self._ring.bytes

    @property
    def maxRecords(self) -> int:
        return self._ring.maxRecords

    @property
    def evicted(self) -> Callable[[Any, int], None]:
        return self._ring.evicted

    @evicted.setter
    def evicted(self, evicted: Callable[[Any, int], None]) -> None:
        self._ring.evicted = evicted

    def add(self, owner: Any, records: list[Record], size: int) -> int:
        """
        Number and keep a batch in memory; it is written with the next
        flush, unless too much is waiting already.
        """
        first = self._ring.add(owner, records, size)
        if self._pendingBytes + size > MAX_PENDING_BYTES:
            self.unstored += len(records)
        else:
            # Packed at once, the records need not outlive the ring: what
            # waits is one value a batch.
            packed, oldest, newest = pack(records)
            self._pending.append((first, owner.topic, len(records), size, packed, oldest, newest))
            self._pendingBytes += size
        return first

    def replay(
        self,
        filters: IFilters,
        tail: int,
        after: Optional[int] = None,
        window: Optional[TimeRange] = None,
    ) -> Replay:
        return self._ring.replay(filters, tail, after, window)

    def deeper(
        self,
        filters: IFilters,
        need: Optional[int],
        after: Optional[int],
        window: Optional[TimeRange],
        below: int,
    ) -> Optional[Iterator[Union[Run, None, Deferred[Any]]]]:
        """
        The matching records on disk below C{below}: see L{IHistory.deeper}.
        """
        low = 1 if after is None else after + 1
        if below <= low or (need is not None and need <= 0):
            return None
        reader = Reader(self._readConnection(), filters, window)
        if need is None:
            return reader.oldestFirst(low, below)
        return reader.newest(min(need, MAX_DISK_TAIL), below)

    def _readConnection(self) -> sqlite3.Connection:
        """
        The connection reads go through (WAL lets them go on while the
        writer writes).
        """
        if self._reader is None:
            path = os.path.join(self.directory, DATABASE)
            self._reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            self._reader.execute("PRAGMA secure_delete=OFF")
        return self._reader

    # The service: the writer runs while the server does.

    def startService(self) -> None:
        super().startService()
        self._restore()
        self.log.info(
            "Store {directory}: {records} records recovered, ids {epoch}-… go on from {next}",
            directory=self.directory,
            records=self.recovered,
            epoch=self.epoch,
            next=self._ring.next,
        )
        self._writer = threading.Thread(target=self._write, name="logio store writer", daemon=True)
        self._writer.start()
        self._flusher.start(FLUSH_INTERVAL, now=False)

    def stopService(self) -> Deferred[None]:
        """
        Write what is waiting, and stop the writer once it is written.
        """
        super().stopService()
        if self._flusher.running:
            self._flusher.stop()
        self.flush()
        self._queue.put(None)
        writer = self._writer
        pool = ThreadPool(minthreads=1, maxthreads=1, name="logio store stop")
        pool.start()
        assert IReactorThreads.providedBy(self._reactor)
        done: Deferred[None] = deferToThreadPool(
            self._reactor, pool, lambda: writer.join() if writer is not None else None
        )

        def stopped(result: None) -> None:
            pool.stop()
            self._connection.close()
            if self._reader is not None:
                self._reader.close()
            self.log.info(
                "Store {directory}: {stored} records stored this run, {unstored} not stored, "
                "{pruned} removed by the retention bounds",
                directory=self.directory,
                stored=self.stored,
                unstored=self.unstored,
                pruned=self.pruned,
            )

        return done.addCallback(stopped)

    def flush(self) -> None:
        """
        Hand the waiting batches to the writer.
        """
        if self._pending:
            now = self._reactor.seconds()
            self._inFlight.append(now)
            self._queue.put((now, self._pending))
            self._pending = []
            self._pendingBytes = 0

    def _restore(self) -> None:
        """
        Read the newest records back into the ring, oldest first, within its
        bounds; and what each topic has on disk.
        """
        self._stored = self._topicsOnDisk()
        ring = self._ring
        rows: list[tuple[Any, ...]] = []
        held = 0
        cursor = self._connection.execute(
            "SELECT b.first, b.count, b.size, b.records, t.app, t.proc, t.host "
            "FROM batches b JOIN topics t ON t.id = b.topic ORDER BY b.first DESC"
        )
        for row in cursor:
            if held >= ring.maxRecords:
                break
            rows.append(row)
            held += row[1]
        cursor.close()
        following = ring.next
        for first, count, size, packed, app, proc, host in reversed(rows):
            records = unpack(packed, count)
            topic = Topic(app, proc, host)
            owner = self.holder(topic, count, records[-1][0])
            ring.next = first
            ring.add(owner, records, size)
        ring.next = following

    def _write(self) -> None:
        """
        The writer thread: write each flush's batches in one transaction.
        """
        while True:
            item = self._queue.get()
            if item is None:
                return
            now, batches = item
            count = sum(batch[2] for batch in batches)
            try:
                written = self._insert(batches)
                pruned = self._prune(now)
                oldest = self._connection.execute(
                    "SELECT oldest FROM batches ORDER BY first LIMIT 1"
                ).fetchone()
                # After a pruning, what is left of each topic is counted anew.
                topics = self._topicsOnDisk() if pruned else None
            except sqlite3.Error as e:
                self._reactor.callFromThread(self._failed, count, e)  # type: ignore[attr-defined]
            else:
                self._reactor.callFromThread(  # type: ignore[attr-defined]
                    self._written, written, pruned, oldest[0] if oldest else None, topics
                )

    def _topicsOnDisk(self) -> dict[Topic, tuple[int, str]]:
        """
        The records of each topic on disk, and the time of its newest.
        """
        rows = self._connection.execute(
            "SELECT t.app, t.proc, t.host, SUM(b.count), MAX(b.newest) "
            "FROM batches b JOIN topics t ON t.id = b.topic GROUP BY b.topic"
        ).fetchall()
        return {Topic(app, proc, host): (int(count), last) for app, proc, host, count, last in rows}

    def _written(
        self,
        written: list[tuple[Topic, int, str]],
        pruned: int,
        oldest: Optional[str],
        topics: Optional[dict[Topic, tuple[int, str]]],
    ) -> None:
        self._inFlight.popleft()
        self.pruned += pruned
        self._oldestTime = oldest
        if topics is not None:
            self._stored = topics
        for topic, count, newest in written:
            self.stored += count
            if topics is None:
                held, last = self._stored.get(topic, (0, ""))
                self._stored[topic] = (held + count, max(last, newest))

    def topics(self) -> list[TopicInfo]:
        return [
            TopicInfo(topic, records, last, 0) for topic, (records, last) in self._stored.items()
        ]

    def metrics(self) -> list[tuple[str, str, str, float]]:
        """
        The store's size on disk, records, oldest record, write lag, and
        what it could not store.
        """
        size = 0
        for name in (DATABASE, DATABASE + "-wal"):
            try:
                size += os.path.getsize(os.path.join(self.directory, name))
            except OSError:
                pass
        oldest = 0.0
        if self._oldestTime is not None:
            oldest = datetime.fromisoformat(self._oldestTime + "+00:00").timestamp()
        now = self._reactor.seconds()
        return [
            ("gauge", "logio_store_bytes", "Bytes the store's files take on disk.", size),
            (
                "gauge",
                "logio_store_records",
                "Records in the store.",
                self.recovered + self.stored - self.pruned,
            ),
            (
                "gauge",
                "logio_store_oldest_time_seconds",
                "The time of the oldest record in the store (0 when it is empty).",
                oldest,
            ),
            (
                "gauge",
                "logio_store_write_lag_seconds",
                "How long the oldest records not written yet have waited for the disk.",
                now - self._inFlight[0] if self._inFlight else 0.0,
            ),
            (
                "counter",
                "logio_store_records_unstored",
                "Records not stored: the disk failed, or the writer was too far behind.",
                self.unstored,
            ),
            (
                "counter",
                "logio_store_records_pruned",
                "Records removed by the retention bounds.",
                self.pruned,
            ),
        ]

    def _prune(self, now: float) -> int:
        """
        Remove the oldest records past C{retainBytes}, and, once a minute,
        those older than C{retainAge}.

        @return: How many records were removed.
        """
        connection = self._connection
        pruned = 0
        pageSize = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        excess = (pages - free) * pageSize - int(self.retainBytes * PRUNE_TO)
        if (pages - free) * pageSize > self.retainBytes:
            freed = 0
            last = None
            for first, length in connection.execute(
                "SELECT first, length(records) + 64 FROM batches ORDER BY first LIMIT 100000"
            ):
                freed += length
                last = first
                if freed >= excess:
                    break
            if last is not None:
                pruned += self._delete("first <= ?", last)
        if now - self._ageChecked >= AGE_CHECK_INTERVAL:
            self._ageChecked = now
            pruned += self._delete("newest < ?", formatEpoch(now - self.retainAge))
        return pruned

    def _delete(self, where: str, bound: object) -> int:
        """
        Remove the batches C{where} says, with C{bound} for its C{?}.

        @return: How many records they held.
        """
        connection = self._connection
        connection.execute("BEGIN")
        try:
            (count,) = connection.execute(
                f"SELECT COALESCE(SUM(count), 0) FROM batches WHERE {where}", (bound,)
            ).fetchone()
            connection.execute(f"DELETE FROM batches WHERE {where}", (bound,))
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return int(count)

    def _failed(self, count: int, error: sqlite3.Error) -> None:
        """
        A write failed: count what it lost, and log it, once a minute at
        most for each cause.  The next flush tries again.
        """
        self._inFlight.popleft()
        self.unstored += count
        cause = str(error)
        now = self._reactor.seconds()
        if now - self._failuresLogged.get(cause, -FAILURE_LOG_INTERVAL) >= FAILURE_LOG_INTERVAL:
            self._failuresLogged[cause] = now
            self.log.error(
                "Store {directory}: records could not be stored ({error}); {unstored} lost so "
                "far; live streaming goes on, and storing resumes when the disk allows",
                directory=self.directory,
                error=cause,
                unstored=self.unstored,
            )

    def _insert(self, batches: list[_Batch]) -> list[tuple[Topic, int, str]]:
        """
        Write C{batches} in one transaction.

        @return: The topic, record count and newest time of each.
        """
        connection = self._connection
        rows = []
        written = []
        for first, topic, count, size, packed, oldest, newest in batches:
            ident = self._topics.get(topic)
            if ident is None:
                connection.execute(
                    "INSERT OR IGNORE INTO topics (app, proc, host) VALUES (?, ?, ?)",
                    (topic.app, topic.proc, topic.host),
                )
                ident = self._topics[topic] = connection.execute(
                    "SELECT id FROM topics WHERE app = ? AND proc = ? AND host = ?",
                    (topic.app, topic.proc, topic.host),
                ).fetchone()[0]
            rows.append((first, count, ident, oldest, newest, size, packed))
            written.append((topic, count, newest))
        connection.execute("BEGIN")
        try:
            # Many rows a statement: the thread gives the GIL up for each
            # statement's step and must take it back from a busy reactor,
            # which costs the reactor more than the step itself.
            for start in range(0, len(rows), ROWS_A_STATEMENT):
                part = rows[start : start + ROWS_A_STATEMENT]
                connection.execute(
                    "INSERT INTO batches VALUES " + ", ".join([_ROW] * len(part)),
                    [value for row in part for value in row],
                )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return written


class _Owner:
    """
    The owner of a batch read back when nobody else claims it: its topic.
    """

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
