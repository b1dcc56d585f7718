# -*- test-case-name: tests.test_refusals -*-
"""
Refusals, counted and logged without letting a flood of them flood the
log: each cause is logged at most once per L{INTERVAL} on each side, with
how many more there were since.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from logio.stats import Stats

#: Seconds between two log lines for the same cause.
INTERVAL = 10.0


class Refusals:
    """
    Count every refusal in the server's stats, by side, and log it unless
    the same cause was logged less than L{INTERVAL} seconds ago.
    """

    log = Logger()

    def __init__(self, stats: Stats, clock: IReactorTime) -> None:
        self._stats = stats
        self._clock = clock
        #: (side, cause) -> (when it was last logged, refusals not logged since)
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def refuse(self, side: str, cause: str, detail: str) -> None:
        """
        One refusal on C{side} (C{publisher} or C{subscriber}) for C{cause}
        (a short fixed text); C{detail} says more in the log line (the peer,
        the value refused).
        """
        self._stats.refusals[side] += 1
        now = self._clock.seconds()
        key = (side, cause)
        last, quiet = self._last.get(key, (None, 0))
        if last is not None and now - last < INTERVAL:
            self._last[key] = (last, quiet + 1)
            return
        if len(self._last) > 1000:
            # Causes are fixed texts, so this only guards against a bug.
            self._last.clear()
        self._last[key] = (now, 0)
        self.log.warn(
            "Refused a {side}: {cause}: {detail}{more}",
            side=side,
            cause=cause,
            detail=detail,
            more=f" ({quiet} more since the last such line)" if quiet else "",
        )
