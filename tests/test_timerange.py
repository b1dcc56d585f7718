"""
Tests for L{logio.timerange}: C{since} and C{until} values.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from logio.timerange import TimeRange, parseInstant, parseRange

#: 2016-12-06T22:14:21.448Z as a POSIX timestamp.
NOW = 1481062461.448


class InstantTests(SynchronousTestCase):
    """
    One C{since} or C{until} value.
    """

    def test_rfc3339(self) -> None:
        """
        An RFC 3339 time, in any zone and with any fraction, is its output
        timestamp: UTC, milliseconds.
        """
        for value, stamp in [
            ("2026-12-05T02:00:00Z", "2026-12-05T02:00:00.000"),
            ("2026-12-05T03:00:00.123456+01:00", "2026-12-05T02:00:00.123"),
            ("2026-12-05t02:00:00z", "2026-12-05T02:00:00.000"),
        ]:
            self.assertEqual(parseInstant("since", value, NOW), stamp)

    def test_spans(self) -> None:
        """
        A span counts back from now, in seconds, minutes, hours, days or
        weeks, a fraction allowed.
        """
        for value, stamp in [
            ("90s", "2016-12-06T22:12:51.448"),
            ("15m", "2016-12-06T21:59:21.448"),
            ("2h", "2016-12-06T20:14:21.448"),
            ("1.5h", "2016-12-06T20:44:21.448"),
            ("7d", "2016-11-29T22:14:21.448"),
            ("1w", "2016-11-29T22:14:21.448"),
            ("0s", "2016-12-06T22:14:21.448"),
        ]:
            self.assertEqual(parseInstant("since", value, NOW), stamp, value)

    def test_bad(self) -> None:
        """
        Anything else is refused with a message that names the parameter
        and the forms it takes.
        """
        for value in ("yesterday", "15", "15 m", "-5m", "2026-12-05", "2026-13-01T00:00:00Z"):
            with self.assertRaises(ValueError) as caught:
                parseInstant("until", value, NOW)
            self.assertEqual(
                str(caught.exception),
                "until must be an RFC 3339 time (2026-12-05T02:00:00Z) or a span before now "
                f"(90s, 15m, 2h, 7d, 1w), not {value!r}",
            )


class RangeTests(SynchronousTestCase):
    """
    Both values together.
    """

    def test_none(self) -> None:
        """
        Neither value: no range.
        """
        self.assertIsNone(parseRange(None, "", NOW))

    def test_range(self) -> None:
        """
        A range holds the timestamps between its ends, both included; one
        without C{until} is open towards the future.
        """
        window = parseRange("1h", "2016-12-06T22:00:00Z", NOW)
        self.assertEqual(window, TimeRange("2016-12-06T21:14:21.448", "2016-12-06T22:00:00.000"))
        self.assertIn("2016-12-06T21:14:21.448", window)
        self.assertIn("2016-12-06T22:00:00.000", window)
        self.assertNotIn("2016-12-06T21:14:21.447", window)
        self.assertNotIn("2016-12-06T22:00:00.001", window)
        self.assertIn("9999-01-01T00:00:00.000", parseRange("1h", None, NOW))
        self.assertIn("0001-01-01T00:00:00.000", parseRange(None, "1h", NOW))

    def test_untilBeforeSince(self) -> None:
        """
        An C{until} before C{since} is refused.
        """
        with self.assertRaises(ValueError) as caught:
            parseRange("1h", "2h", NOW)
        self.assertEqual(
            str(caught.exception),
            "until (2016-12-06T20:14:21.448Z) is before since (2016-12-06T21:14:21.448Z)",
        )
