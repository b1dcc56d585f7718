"""
Tests for L{logio.topic}: the topic value type, RFC 3339 parsing with its
cache, and the output timestamp format.

Tests marked C{# BUG (commit)} were written for a bug found in logio at that
commit; the comment says what was wrong there.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

from twisted.trial.unittest import SynchronousTestCase

from logio.topic import StampParser, Topic, formatEpoch, formatTime, serverHost

TS = "2016-12-06T22:14:21.448"


class TopicTests(SynchronousTestCase):
    """
    L{Topic} is a hashable value with the output line's prefix.
    """

    def test_prefix(self) -> None:
        """
        The prefix sits between timestamp and text: C{ app[proc] host: }.
        """
        self.assertEqual(Topic("myapp", "web", "foobar").prefix(), " myapp[web] foobar: ")

    def test_value(self) -> None:
        """
        Equal fields make equal topics with equal hashes; any field differing
        makes them differ.
        """
        web = Topic("myapp", "web", "foobar")
        self.assertEqual(web, Topic("myapp", "web", "foobar"))
        self.assertEqual(hash(web), hash(Topic("myapp", "web", "foobar")))
        self.assertEqual(
            len(
                {
                    web,
                    Topic("other", "web", "foobar"),
                    Topic("myapp", "-", "foobar"),
                    Topic("myapp", "web", "h"),
                }
            ),
            4,
        )

    def test_serverHost(self) -> None:
        """
        The server names itself by its host name.
        """
        self.assertEqual(serverHost(), socket.gethostname())


class StampParserTests(SynchronousTestCase):
    """
    L{StampParser} turns RFC 3339 times into output timestamps.
    """

    def assertParses(self, stamps: dict[str, str | None]) -> None:
        """
        Each key parses to its value, with a fresh parser and with one parser
        shared by all of them in order.
        """
        shared = StampParser()
        for stamp, expected in stamps.items():
            self.assertEqual(
                (StampParser()(stamp), shared(stamp)), (expected, expected), repr(stamp)
            )

    def test_nanoseconds(self) -> None:
        """
        Nine fraction digits are truncated to milliseconds.
        """
        self.assertParses(
            {
                "2016-12-06T22:14:21.448123456Z": TS,
                "2016-12-06T17:14:21.448999999-05:00": TS,
                "2016-12-06T22:14:21.999999999Z": "2016-12-06T22:14:21.999",
                "2016-12-06T22:14:21.000000001Z": "2016-12-06T22:14:21.000",
            }
        )

    def test_microseconds(self) -> None:
        """
        Six fraction digits are truncated to milliseconds.
        """
        self.assertParses(
            {
                "2016-12-06T22:14:21.448123Z": TS,
                "2016-12-06T17:14:21.448999-05:00": TS,
                "2016-12-06T22:14:21.001999Z": "2016-12-06T22:14:21.001",
            }
        )

    def test_fewFractionDigits(self) -> None:
        """
        One to three fraction digits, and four to eight, are read as a
        decimal fraction.
        """
        self.assertParses(
            {
                "2016-12-06T22:14:21.4Z": "2016-12-06T22:14:21.400",
                "2016-12-06T22:14:21.44Z": "2016-12-06T22:14:21.440",
                "2016-12-06T22:14:21.448Z": TS,
                "2016-12-06T22:14:21.4489Z": TS,
                "2016-12-06T22:14:21.4481234Z": TS,
                "2016-12-06T22:14:21.4+05:30": "2016-12-06T16:44:21.400",
                "2016-12-06T22:14:21.44+05:30": "2016-12-06T16:44:21.440",
            }
        )

    def test_noFraction(self) -> None:
        """
        A time without a fraction has C{.000} milliseconds.
        """
        self.assertParses(
            {
                "2016-12-06T22:14:21Z": "2016-12-06T22:14:21.000",
                "2016-12-06T17:14:21-05:00": "2016-12-06T22:14:21.000",
            }
        )

    def test_zulu(self) -> None:
        """
        C{Z} and C{z} both mean UTC, as do C{+00:00} and C{-00:00}; a
        lower-case C{t} separator is accepted.
        """
        self.assertParses(
            {
                "2016-12-06T22:14:21.448Z": TS,
                "2016-12-06T22:14:21.448z": TS,
                "2016-12-06t22:14:21.448123z": TS,
                "2016-12-06T22:14:21.448+00:00": TS,
                "2016-12-06T22:14:21.448123456-00:00": TS,
            }
        )

    def test_offsets(self) -> None:
        """
        Numeric offsets are applied, including half hours and date changes.
        """
        self.assertParses(
            {
                "2016-12-07T03:44:21.448123+05:30": TS,
                "2016-12-07T03:44:21.448123456+05:30": TS,
                "2016-12-07T03:44:21+05:30": "2016-12-06T22:14:21.000",
                "2016-12-06T16:44:21.448-05:30": TS,
                "2016-12-31T20:00:00.5-05:00": "2017-01-01T01:00:00.500",
                "2017-01-01T00:30:00.5+01:00": "2016-12-31T23:30:00.500",
                "2016-02-29T23:59:59.999-00:01": "2016-03-01T00:00:59.999",
            }
        )

    def test_garbage(self) -> None:
        """
        Anything that is not an RFC 3339 date-time with a zone gives L{None}.
        """
        self.assertParses(
            dict.fromkeys(
                [
                    "",
                    "yesterday",
                    "2016-12-06",
                    "2016-12-06T22:14:21",
                    "2016-12-06T22:14:21.448",
                    "2016-12-06T22:14:21.123456789",
                    "2016-12-06T22:14:21.1234567890123",
                    "2016-12-06T22:14:21.Z",
                    "2016-12-06T22:14:21.448ZZ",
                    "2016-12-06T22:14:21.448123ZZ",
                    "2016-12-06T22:14:21.448123Zx",
                    "2016-12-06T22:14:21,448Z",
                    "2016-12-06T22:14:21+05",
                    "2016-12-06T22:14:21+0530",
                    "2016-12-06T22:14:21+05:3x",
                    "2016-12-06T22:14:21.448123+05:30x",
                    "2016-12-06T22:14:21+05:30:00",
                    "2016-12-06T22:14:21+24:00",
                    "2016-12-06X22:14:21Z",
                    "2016-12-06T22.14.21Z",
                    "2016-12-06T22:14:2Z",
                    "2016-13-06T22:14:21Z",
                    "2016-02-30T22:14:21Z",
                    "2016-12-06T25:14:21Z",
                    "2016-12-06T22:14:60Z",
                ]
            )
        )

    # BUG (395db03): datetime.fromisoformat accepts ISO 8601 forms RFC 3339 does not
    # have, such as week dates and times without colons.
    def test_otherISO8601Forms(self) -> None:
        """
        ISO 8601 forms outside RFC 3339 (week dates, basic format times) give
        L{None}.
        """
        self.assertParses(dict.fromkeys(["2016-W49-2T22:14:21Z", "2016-12-06T221421.5+00:00"]))

    # BUG (395db03): the cache key is built when the digits after the milliseconds pass
    # str.isdigit(), which also accepts non-ASCII digits; the parser does not.
    def test_nonASCIIFractionDigits(self) -> None:
        """
        Non-ASCII digits in a long fraction give L{None}, as in a short one.
        """
        self.assertParses(
            dict.fromkeys(
                [
                    "2016-12-06T22:14:21.448123456\u0660Z",
                    "2016-12-06T22:14:21.448\u0661\u0662+05:30",
                    "2016-12-06T22:14:21.\u0661\u0662Z",
                ]
            )
        )

    # BUG (395db03): astimezone raises OverflowError when the UTC time falls outside
    # years 1 to 9999; the parser only catches ValueError.
    def test_outOfRange(self) -> None:
        """
        A time whose UTC form is outside years 1 to 9999 gives L{None}, not an
        exception.
        """
        self.assertParses(
            dict.fromkeys(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999-01:00"])
        )

    def test_cacheKeepsZonesApart(self) -> None:
        """
        Two times sharing their text up to the millisecond but with different
        zones give different results, in either order.
        """
        stamps = {
            "2016-12-06T22:14:21.448123Z": TS,
            "2016-12-06T22:14:21.448123+05:30": "2016-12-06T16:44:21.448",
            "2016-12-06T22:14:21.448999-05:00": "2016-12-07T03:14:21.448",
            "2016-12-06T22:14:21.448999z": TS,
        }
        self.assertParses(stamps)
        self.assertParses(dict(reversed(stamps.items())))

    def test_cacheKeepsMillisecondsApart(self) -> None:
        """
        Times sharing a millisecond share a result; the next millisecond and
        the next second do not.
        """
        self.assertParses(
            {
                "2016-12-06T22:14:21.448000Z": TS,
                "2016-12-06T22:14:21.448999999Z": TS,
                "2016-12-06T22:14:21.449000Z": "2016-12-06T22:14:21.449",
                "2016-12-06T22:14:22.448123Z": "2016-12-06T22:14:22.448",
                "2016-12-06T22:14:21.448Z": TS,
            }
        )

    # BUG (1427ae4): the cache is looked up by the first 23 characters and
    # the zone alone, so garbage between them hits a valid time's entry.
    def test_cacheKeepsGarbageOut(self) -> None:
        """
        Garbage that shares a valid time's first 23 characters and zone still
        gives L{None} after the valid one was cached, and the reverse.
        """
        stamps = {
            "2016-12-06T22:14:21.448123Z": TS,
            "2016-12-06T22:14:21.448x23Z": None,
            "2016-12-06T22:14:21.448123+05:30": "2016-12-06T16:44:21.448",
            "2016-12-06T22:14:21.448+12+05:30": None,
        }
        self.assertParses(stamps)
        self.assertParses(dict(reversed(stamps.items())))

    def test_manyStamps(self) -> None:
        """
        Results stay right past the cache's size, when it starts over.
        """
        parse = StampParser()
        start = datetime(2016, 12, 6, 22, 14, 21, 448123, timezone.utc)
        for step in range(10000):
            when = start + timedelta(milliseconds=step)
            self.assertEqual(parse(when.isoformat()), formatTime(when))
        self.assertEqual(parse(start.isoformat()), TS)
        self.assertEqual(parse("2016-12-06T22:14:31.447123+00:00"), "2016-12-06T22:14:31.447")


class FormatTests(SynchronousTestCase):
    """
    Output timestamps are UTC with truncated milliseconds and no zone.
    """

    def test_truncatesMilliseconds(self) -> None:
        """
        Microseconds are truncated, never rounded, to milliseconds.
        """
        for microsecond, expected in [
            (448000, TS),
            (448999, TS),
            (0, "2016-12-06T22:14:21.000"),
            (999, "2016-12-06T22:14:21.000"),
            (1000, "2016-12-06T22:14:21.001"),
            (999999, "2016-12-06T22:14:21.999"),
        ]:
            when = datetime(2016, 12, 6, 22, 14, 21, microsecond, timezone.utc)
            self.assertEqual(formatTime(when), expected)

    def test_convertsToUTC(self) -> None:
        """
        An aware time in another zone is shown in UTC.
        """
        india = timezone(timedelta(hours=5, minutes=30))
        when = datetime(2016, 12, 7, 3, 44, 21, 448999, india)
        self.assertEqual(formatTime(when), TS)

    # BUG (395db03): strftime's %Y does not pad years before 1000 to four digits.
    def test_smallYearPadded(self) -> None:
        """
        Years before 1000 are written with four digits.
        """
        when = datetime(999, 1, 2, 3, 4, 5, 6000, timezone.utc)
        self.assertEqual(formatTime(when), "0999-01-02T03:04:05.006")

    def test_formatEpoch(self) -> None:
        """
        POSIX timestamps are shown in UTC, milliseconds truncated.
        """
        for seconds, expected in [
            (0, "1970-01-01T00:00:00.000"),
            (1481062461.448, TS),
            (1481062461.4489, TS),
            (1481062461.999999, "2016-12-06T22:14:21.999"),
            (1500000000.5, "2017-07-14T02:40:00.500"),
        ]:
            self.assertEqual(formatEpoch(seconds), expected)
