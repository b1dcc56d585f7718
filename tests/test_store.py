"""
Tests for L{logio.store}: the durable store, against its interface and a
real SQLite database in a temporary folder.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from typing import Callable

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from logio.filters import Filters
from logio.history import History
from logio.interfaces import IHistory
from logio.levels import LEVELS
from logio.packing import pack, unpack
from logio.store import Store
from logio.storedb import DATABASE, StoreError
from logio.topic import Topic, formatEpoch
from tests.support.waiting import TIMEOUT

WEB = Topic("web", "p", "h")
CRON = Topic("cron", "-", "h")
#: A record time of now: within the default retention.
NOW = float(int(time.time()))
TS = formatEpoch(NOW)


class Owner:
    def __init__(self, topic: Topic) -> None:
        self.topic = topic


class StoreTests(TestCase):
    """
    What a store keeps across a restart.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()

    def open(self, records: int = 100) -> Store:
        store = Store(self.directory, History(records, 1 << 20), reactor)
        store.startService()
        return store

    def logs(self, store: IHistory, tail: int = 1000) -> list[tuple[str, str, str | None]]:
        return [record for run in store.replay(Filters(), tail).runs for record in run.records]

    async def test_restart(self) -> None:
        """
        Every record comes back after a restart exactly (time, text with its
        newlines and any characters, level), with its topic and sequence
        number, and the store's id; numbering goes on after them.
        """
        store = self.open()
        self.assertTrue(verifyObject(IHistory, store))
        records = [(TS, "plain", None), (TS, "two\nlines ünïcödé \x1b[31m", "error")]
        self.assertEqual(store.add(Owner(WEB), list(records), 40), 1)
        self.assertEqual(store.add(Owner(CRON), [(TS, "cron", "info")], 4), 3)
        await store.stopService()
        again = self.open()
        self.assertEqual(again.epoch, store.epoch)
        self.assertEqual(again.recovered, 3)
        self.assertEqual(self.logs(again), [*records, (TS, "cron", "info")])
        runs = again.replay(Filters(), 10).runs
        self.assertEqual(
            [(run.topic, list(run.seqs)) for run in runs], [(WEB, [1, 2]), (CRON, [3])]
        )
        self.assertEqual(again.add(Owner(WEB), [(TS, "after", None)], 5), 4)
        await again.stopService()

    async def test_ringBounds(self) -> None:
        """
        Read back, the ring holds the newest records within its bounds, and
        the holder is told of each batch it holds.
        """
        store = self.open()
        for i in range(10):
            store.add(Owner(WEB), [(TS, f"{i}-{j}", None) for j in range(3)], 9)
        await store.stopService()
        held: list[tuple[Topic, int, str]] = []
        again = Store(self.directory, History(6, 1 << 20), reactor)

        def holder(topic: Topic, count: int, last: str) -> Owner:
            held.append((topic, count, last))
            return Owner(topic)

        again.holder = holder
        again.startService()
        self.addCleanup(again.stopService)
        self.assertEqual(
            [text for _, text, _ in self.logs(again)],
            [f"{i}-{j}" for i in (8, 9) for j in range(3)],
        )
        self.assertEqual(held, [(WEB, 3, TS), (WEB, 3, TS)])
        self.assertEqual(again.next, 31)

    def test_otherFormat(self) -> None:
        """
        A store written in another format is refused, never misread.
        """
        os.makedirs(self.directory)
        connection = sqlite3.connect(os.path.join(self.directory, DATABASE))
        connection.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('format', '99'), ('id', '1');"
        )
        connection.commit()
        connection.close()
        with self.assertRaises(StoreError) as caught:
            self.open()
        self.assertEqual(
            str(caught.exception),
            f"--store {self.directory}: it holds a store of format '99', and this logio reads "
            "formats 1, 2 only: use another folder, or the logio that wrote it",
        )

    async def test_formatOne(self) -> None:
        """
        A store of format 1 (every batch with a stamp per record) is read,
        and marked as format 2 before anything of format 2 is written.
        """
        store = self.open()
        store.add(Owner(WEB), [(TS, "new", None)], 3)
        await store.stopService()
        connection = sqlite3.connect(os.path.join(self.directory, DATABASE))
        connection.execute("UPDATE meta SET value = '1' WHERE key = 'format'")
        # A batch as format 1 wrote it.
        connection.execute(
            "UPDATE batches SET records = ?", (f"F{TS}e".encode() + "old ü".encode(),)
        )
        connection.commit()
        connection.close()
        again = self.open()
        self.assertEqual(self.logs(again), [(TS, "old ü", "error")])
        connection = sqlite3.connect(os.path.join(self.directory, DATABASE))
        self.assertEqual(
            connection.execute("SELECT value FROM meta WHERE key = 'format'").fetchone(), ("2",)
        )
        connection.close()
        await again.stopService()

    def test_otherDatabase(self) -> None:
        """
        A database that is not a store is refused, and left as it was.
        """
        os.makedirs(self.directory)
        path = os.path.join(self.directory, DATABASE)
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE mine (x)")
        connection.commit()
        connection.close()
        with open(path, "rb") as f:
            before = f.read()
        with self.assertRaises(StoreError) as caught:
            self.open()
        self.assertEqual(
            str(caught.exception),
            f"--store {self.directory}: {DATABASE} there is a database of something else: "
            "use another folder",
        )
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_unusable(self) -> None:
        """
        A folder that cannot be written is refused with the reason.
        """
        if os.geteuid() == 0:
            # Root writes anywhere: a file where the folder should be fails
            # for everyone.
            with open(self.directory, "w"):
                pass
        else:
            os.makedirs(self.directory)
            os.chmod(self.directory, stat.S_IRUSR | stat.S_IXUSR)
        with self.assertRaises(StoreError) as caught:
            self.open()
        self.assertTrue(
            str(caught.exception).startswith(f"--store {self.directory}: cannot use it: ")
        )


class Clocked:
    """
    The reactor, but with a clock the test sets.
    """

    def __init__(self, now: float) -> None:
        self.now = now

    def seconds(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> object:
        return getattr(reactor, name)


class RetentionTests(TestCase):
    """
    The store's bounds: bytes on disk, and age.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()

    def stored(self) -> tuple[list[int], int]:
        """
        The first seq of every batch on disk, and the bytes its pages use.
        """
        connection = sqlite3.connect(os.path.join(self.directory, DATABASE))
        firsts = [row[0] for row in connection.execute("SELECT first FROM batches ORDER BY first")]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        free = connection.execute("PRAGMA freelist_count").fetchone()[0]
        size = connection.execute("PRAGMA page_size").fetchone()[0]
        connection.close()
        return firsts, (pages - free) * size

    async def test_bytes(self) -> None:
        """
        Past C{retainBytes}, the oldest batches go, and the file stays
        within the bound plus a small margin however much is written.
        """
        bound = 1 << 20
        store = Store(self.directory, History(100, 1 << 20), reactor, retainBytes=bound)
        store.startService()
        for i in range(40):
            store.add(Owner(WEB), [(TS, f"{i} {j} " + "x" * 500, None) for j in range(100)], 51000)
            store.flush()
        await store.stopService()
        firsts, used = self.stored()
        self.assertLessEqual(used, bound)
        self.assertEqual(firsts[-1], 3901)
        self.assertGreater(firsts[0], 1)
        self.assertEqual(firsts, list(range(firsts[0], 3902, 100)))
        self.assertEqual(store.stored, 4000)
        self.assertEqual(store.pruned, firsts[0] - 1)
        self.assertLessEqual(os.path.getsize(os.path.join(self.directory, DATABASE)), bound * 1.5)

    async def test_age(self) -> None:
        """
        Records older than C{retainAge}, by their time, go.
        """
        clocked = Clocked(1764900000.0)  # 2025-12-05T02:00:00Z
        store = Store(self.directory, History(100, 1 << 20), clocked, retainAge=86400)  # type: ignore[arg-type]
        store.startService()
        store.add(Owner(WEB), [("2025-12-03T02:00:00.000", "two days old", None)], 10)
        store.add(Owner(WEB), [("2025-12-04T03:00:00.000", "23 hours old", None)], 10)
        await store.stopService()
        self.assertEqual(self.stored()[0], [2])
        self.assertEqual(store.pruned, 1)


class FaultTests(TestCase):
    """
    A disk that fails: what is lost is counted and said, once per cause,
    and storing resumes when the disk allows.
    """

    async def test_fullDisk(self) -> None:
        """
        Writes that fail lose their records (counted in C{/metrics}), the
        failure is logged once however often it repeats, and the next
        writes that succeed are stored; history in memory goes on.
        """
        store = Store(self.mktemp(), History(100, 1 << 20), reactor)
        store.startService()
        failing = [True]
        insert = store._insert

        def full(batches: list[object]) -> object:
            if failing[0]:
                raise sqlite3.OperationalError("database or disk is full")
            return insert(batches)  # type: ignore[arg-type]

        self.patch(store, "_insert", full)
        with capturedLogs() as events:
            for i in range(3):
                store.add(Owner(WEB), [(TS, f"lost {i}", None)], 6)
                store.flush()
            await waitUntil(lambda: store.unstored == 3)
        logged = [
            formatEvent(event) for event in events if "could not be stored" in formatEvent(event)
        ]
        failing[0] = False
        store.add(Owner(WEB), [(TS, "kept", None)], 4)
        await store.stopService()
        self.assertEqual(len(logged), 1)
        self.assertIn("records could not be stored (database or disk is full)", logged[0])
        self.assertEqual((store.stored, store.unstored), (1, 3))
        metrics = {name: value for _, name, _, value in store.metrics()}
        self.assertEqual(metrics["logio_store_records_unstored"], 3)
        self.assertEqual(metrics["logio_store_records"], 1)
        self.assertEqual(metrics["logio_store_oldest_time_seconds"], NOW)
        self.assertGreater(metrics["logio_store_bytes"], 0)
        self.assertEqual(
            [text for run in store.replay(Filters(), 10).runs for _, text, _ in run.records],
            ["lost 0", "lost 1", "lost 2", "kept"],
        )


async def waitUntil(condition: Callable[[], bool]) -> None:
    """
    Wait, letting the reactor run, until C{condition()} is true.
    """
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await deferLater(reactor, 0.01, lambda: None)


class PackingTests(TestCase):
    """
    A batch packed for the store reads back exactly, however its texts look.
    """

    @given(
        st.lists(
            st.tuples(
                st.sampled_from([TS, "2016-12-06T22:14:21.448", "short", "x" * 41]),
                st.text(),
                st.sampled_from([None, *LEVELS]),
            ),
            min_size=1,
            max_size=20,
        )
    )
    def test_roundTrip(self, records: list[tuple[str, str, str | None]]) -> None:
        """
        Records read back as they were packed: texts with NULs, newlines,
        any characters (lone surrogates too), levels and odd timestamps.
        """
        packed, oldest, newest = pack(records)
        self.assertEqual(unpack(packed, len(records)), records)
        self.assertEqual((oldest, newest), (min(r[0] for r in records), max(r[0] for r in records)))

    def test_flat(self) -> None:
        """
        The usual batch is packed flat, not as JSON: timestamps, level
        letters, texts joined by NUL.
        """
        later = TS[:-1] + "9"
        packed = pack([(TS, "a", "error"), (later, "b\nc", None)])
        self.assertEqual(packed, (f"F{TS}{later}e-a\x00b\nc".encode(), TS, later))
        self.assertEqual(pack([(TS, "a", None), (TS, "b", None)])[0], f"S{TS}--a\x00b".encode())
        self.assertTrue(pack([(TS, "a", None), ("short", "b", None)])[0].startswith(b"J"))
        self.assertTrue(pack([(TS, "a\x00", None), (TS, "b", None)])[0].startswith(b"J"))
