"""
Tests for L{logio.cluster.entries}: the batches of a stream entry.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from logio.cluster.entries import EntryError, decodeBatches, encodeBatches
from logio.topic import Topic

TS = "2016-12-06T22:14:21.448"


class EntriesTests(SynchronousTestCase):
    """
    An entry's batches read back exactly; anything else is refused.
    """

    def test_roundTrip(self) -> None:
        """
        Batches of several topics (names in any script, records with
        levels, newlines, NULs and their own times) come back as they
        went, each with the bytes it took.
        """
        batches = [
            (Topic("web", "-", "h1"), [(TS, "a", "error"), (TS, "b\nc", None)]),
            (Topic("wëb", "wörker", "ホスト"), [(TS, "nul \x00 here", None)]),
            (Topic("web", "-", "h1"), [("2016-12-06T22:14:22.000", "later", "info")]),
        ]
        data = encodeBatches(batches)
        decoded = list(decodeBatches(data))
        self.assertEqual([(topic, records) for topic, records, _ in decoded], batches)
        self.assertLess(sum(size for _, _, size in decoded), len(data))

    def test_refused(self) -> None:
        """
        Truncated or foreign bytes are an L{EntryError}, never records.
        """
        data = encodeBatches([(Topic("web", "-", "h"), [(TS, "abc", None)])])
        for bad in (data[:-1], data[:7], b"\xff" * 40, data + b"\x00"):
            with self.assertRaises(EntryError):
                list(decodeBatches(bad))
