"""
Tests for L{logio.history}: numbering, bounded keeping, and what a new
subscriber is replayed.
"""

from __future__ import annotations

from attrs import define
from twisted.trial.unittest import SynchronousTestCase

from logio.filters import Filters
from logio.history import RECORD_OVERHEAD, History
from logio.topic import Record, Topic

TS = "2016-12-06T22:14:21.448"
A = Topic("a", "p", "h")
B = Topic("b", "p", "h")
EVERYTHING = Filters()


@define(eq=False)
class Owner:
    """
    A batch's owner, counting how many of its records were evicted.
    """

    topic: Topic
    evicted: int = 0


def add(history: History, owner: Owner, *texts: str) -> int:
    """
    Add a batch of records with C{texts}, its size their length.
    """
    records: list[Record] = [(TS, text, None) for text in texts]
    return history.add(owner, records, sum(map(len, texts)))


class HistoryTests(SynchronousTestCase):
    """
    Records are numbered and kept, oldest out first, within both bounds.
    """

    def history(self, maxRecords: int = 100, maxBytes: int = 1 << 20) -> History:
        return History(
            maxRecords,
            maxBytes,
            lambda owner, count: setattr(owner, "evicted", owner.evicted + count),
        )

    def texts(self, history: History, filters: Filters = EVERYTHING, tail: int = 1000) -> list[str]:
        return [text for run in history.replay(filters, tail).runs for _, text, _ in run.records]

    def test_numbering(self) -> None:
        """
        Each record gets the next number, starting at 1.
        """
        history = self.history()
        self.assertEqual(add(history, Owner(A), "x", "y"), 1)
        self.assertEqual(add(history, Owner(B), "z"), 3)
        self.assertEqual((history.next, history.oldest, history.records), (4, 1, 3))

    def test_recordBound(self) -> None:
        """
        Past C{maxRecords} the oldest records go, part of a batch if need
        be, and their owner is told how many.
        """
        history = self.history(maxRecords=3)
        a, b = Owner(A), Owner(B)
        add(history, a, "1", "2")
        add(history, b, "3", "4")
        self.assertEqual(self.texts(history), ["2", "3", "4"])
        self.assertEqual((a.evicted, b.evicted, history.oldest), (1, 0, 2))
        add(history, b, "5", "6", "7", "8")
        self.assertEqual(self.texts(history), ["6", "7", "8"])
        self.assertEqual((a.evicted, b.evicted, history.records), (2, 3, 3))

    def test_byteBound(self) -> None:
        """
        Past C{maxBytes} (text plus L{RECORD_OVERHEAD} each) the oldest
        records go until the rest fits.
        """
        size = 10 + RECORD_OVERHEAD
        history = self.history(maxBytes=size * 3)
        add(history, Owner(A), *(str(i) * 10 for i in range(2)))
        add(history, Owner(A), "2" * 10, "3" * 10)
        self.assertEqual(self.texts(history), ["1" * 10, "2" * 10, "3" * 10])
        self.assertEqual(history.bytes, size * 3)
        add(history, Owner(A), "x" * (size * 2 - RECORD_OVERHEAD))
        self.assertEqual(self.texts(history), ["3" * 10, "x" * (size * 2 - RECORD_OVERHEAD)])
        self.assertEqual((history.records, history.bytes), (2, size * 3))

    def test_partialEvictionByShare(self) -> None:
        """
        Evicting part of a batch frees its share of the batch's size: the
        count stays within the bound, and is exact again once the batch is
        gone.
        """
        history = self.history(maxBytes=1000)
        add(history, Owner(A), "x" * 10, "y" * 700)
        add(history, Owner(A), "z" * 100)
        self.assertLessEqual(history.bytes, 1000)
        self.assertEqual(self.texts(history), ["y" * 700, "z" * 100])
        add(history, Owner(A), "w" * 500)
        self.assertEqual(self.texts(history), ["z" * 100, "w" * 500])
        self.assertEqual(history.bytes, 100 + 500 + 2 * RECORD_OVERHEAD)

    def test_oversizedRecord(self) -> None:
        """
        A record bigger than the whole byte bound is not kept at all.
        """
        history = self.history(maxBytes=100)
        add(history, Owner(A), "x" * 200)
        self.assertEqual((history.records, history.bytes, history.oldest), (0, 0, 2))

    def test_off(self) -> None:
        """
        With no room, records are still numbered but nothing is kept.
        """
        history = self.history(maxRecords=0)
        self.assertEqual(add(history, Owner(A), "x"), 1)
        self.assertEqual(add(history, Owner(A), "y"), 2)
        self.assertEqual((history.records, self.texts(history)), (0, []))

    def test_tail(self) -> None:
        """
        A replay gives the newest C{tail} records that match the topic and
        C{log} filters, oldest first, in runs of one topic, with their numbers.
        """
        history = self.history()
        a, b = Owner(A), Owner(B)
        add(history, a, "a1", "a2 x")
        add(history, b, "b1 x")
        add(history, a, "a3 x", "a4")
        add(history, a, "a5 x")
        runs = history.replay(Filters.fromQuery({"log": "x"}), 3).runs
        self.assertEqual(
            [(run.topic, [text for _, text, _ in run.records], run.seqs) for run in runs],
            [(B, ["b1 x"], [3]), (A, ["a3 x", "a5 x"], [4, 6])],
        )
        self.assertEqual(self.texts(history, Filters.fromQuery({"app": "^a$"}), 2), ["a4", "a5 x"])
        self.assertEqual(self.texts(history, tail=0), [])
        self.assertEqual(len(self.texts(history, tail=100)), 6)

    def test_after(self) -> None:
        """
        Resuming after a number replays every matching record after it
        (whatever C{tail} says), and counts those no longer held.
        """
        history = self.history(maxRecords=4)
        owner = Owner(A)
        add(history, owner, "1", "2", "3")
        replay = history.replay(Filters(), 1, after=1)
        self.assertEqual(([s for run in replay.runs for s in run.seqs], replay.missed), ([2, 3], 0))
        add(history, owner, "4", "5", "6")
        replay = history.replay(Filters(), 0, after=1)
        self.assertEqual(
            ([s for run in replay.runs for s in run.seqs], replay.missed), ([3, 4, 5, 6], 1)
        )
        replay = history.replay(Filters(), 0, after=6)
        self.assertEqual((replay.runs, replay.missed), ([], 0))
        replay = history.replay(Filters.fromQuery({"app": "nothing"}), 0, after=0)
        self.assertEqual((replay.runs, replay.missed), ([], 2))
