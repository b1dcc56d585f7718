"""
Tests for L{logio.refusals}: every refusal counted, the log rate-limited.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from logio.refusals import INTERVAL, Refusals
from logio.stats import Stats


class RefusalsTests(SynchronousTestCase):
    """
    One log line per cause and side per interval, all counted.
    """

    def test_rateLimited(self) -> None:
        """
        A cause repeated within the interval is counted, not logged; the
        next line says how many were not; the same cause on the other side
        has lines of its own.
        """
        stats, clock = Stats(), Clock()
        refusals = Refusals(stats, clock)
        with capturedLogs() as events:
            for _ in range(3):
                refusals.refuse("publisher", "no token", "a")
            refusals.refuse("subscriber", "no token", "b")
            clock.advance(INTERVAL)
            refusals.refuse("publisher", "no token", "c")
        self.assertEqual(
            [formatEvent(event) for event in events],
            [
                "Refused a publisher: no token: a",
                "Refused a subscriber: no token: b",
                "Refused a publisher: no token: c (2 more since the last such line)",
            ],
        )
        self.assertEqual((stats.refusals["publisher"], stats.refusals["subscriber"]), (4, 1))
