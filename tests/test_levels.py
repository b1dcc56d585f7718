"""
Tests for L{logio.levels}: the level of each source's records, the level
words found in a text, and C{?level=} values.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from logio.levels import (
    LEVELS,
    RANK,
    detect,
    fromName,
    fromOTLP,
    fromSyslog,
    levelsOf,
    parseLevel,
    ranks,
)

TS = "2016-12-06T22:14:21.448"


class SourceTests(SynchronousTestCase):
    """
    The levels sources give, as the issue maps them.
    """

    def test_syslog(self) -> None:
        """
        Syslog 0-2 are fatal, 3 error, 4 warn, 5 notice, 6 info, 7 debug.
        """
        self.assertEqual(
            [fromSyslog(severity) for severity in range(8)],
            ["fatal", "fatal", "fatal", "error", "warn", "notice", "info", "debug"],
        )

    def test_otlpNumbers(self) -> None:
        """
        OTLP severity numbers come in runs of four per level, 1-24.
        """
        expected = ["trace"] * 4 + ["debug"] * 4 + ["info"] * 4
        expected += ["warn"] * 4 + ["error"] * 4 + ["fatal"] * 4
        self.assertEqual([fromOTLP(number, None) for number in range(1, 25)], expected)

    def test_otlpText(self) -> None:
        """
        Without a number (0 is unspecified), C{severityText} names the
        level; a number wins over a text.
        """
        self.assertEqual(fromOTLP(0, "Warning"), "warn")
        self.assertEqual(fromOTLP(None, "ERROR"), "error")
        self.assertEqual(fromOTLP(17, "INFO"), "error")
        self.assertIsNone(fromOTLP(0, "loud"))
        self.assertIsNone(fromOTLP(99, None))

    def test_names(self) -> None:
        """
        Common names and spellings, any case, and pino's numbers; anything
        else has no level.
        """
        for name, level in [
            ("WARNING", "warn"),
            (" err ", "error"),
            ("Critical", "fatal"),
            ("emerg", "fatal"),
            ("informational", "info"),
            (30, "info"),
            ("60", "fatal"),
        ]:
            self.assertEqual(fromName(name), level, name)
        for name in ("verbose", "", None, True, 3.5, [], "x" * 100, 45):
            self.assertIsNone(fromName(name), name)


class DetectTests(SynchronousTestCase):
    """
    A level word at the start of a text, as Dozzle finds them.
    """

    def test_words(self) -> None:
        """
        Each word, alone or followed by a colon, a space or a bracket.
        """
        for text, level in [
            ("ERROR something broke", "error"),
            ("WARN: low disk", "warn"),
            ("WARNING low disk", "warn"),
            ("INFO started", "info"),
            ("DEBUG x=1", "debug"),
            ("TRACE enter", "trace"),
            ("FATAL out of memory", "fatal"),
            ("CRITICAL:root:down", "fatal"),
            ("NOTICE rotated", "notice"),
            ("[ERROR] bracketed", "error"),
            ("<WARN> angled", "warn"),
            ("ERROR", "error"),
        ]:
            self.assertEqual(detect(text), level, text)

    def test_afterTimestamp(self) -> None:
        """
        After an RFC 3339 timestamp, Python's default C{asctime}, a time of
        day or a bracketed timestamp, and colour sequences.
        """
        for text in (
            "2026-12-05T04:00:00Z ERROR x",
            "2026-12-05T04:00:00.123456+01:00 ERROR x",
            "2026-12-05 04:00:00,123 ERROR x",
            "2016/12/06 17:14:21 ERROR x",
            "04:00:00.123 ERROR x",
            "[2026-12-05 04:00:00] ERROR x",
            "\x1b[31mERROR\x1b[0m x",
            "2026-12-05T04:00:00Z \x1b[1;31m[ERROR]\x1b[0m x",
        ):
            self.assertEqual(detect(text), "error", text)

    def test_notLevels(self) -> None:
        """
        A word that only starts like a level, a lowercase word, or a level
        word later in the text is no level.
        """
        for text in (
            "ERRORS happen",
            "INFORMATION desk",
            "error: lowercase",
            "the ERROR later",
            "2026-12-05T04:00:00Z something ERROR",
            "",
        ):
            self.assertIsNone(detect(text), text)


class BatchTests(SynchronousTestCase):
    """
    The levels of a batch, found once for all of it.
    """

    def test_none(self) -> None:
        """
        A batch without any level is L{None}: no work per record.
        """
        self.assertIsNone(levelsOf([(TS, "a", None), (TS, "b", None)]))
        self.assertEqual(ranks([(TS, "a", None)]), [-1])

    def test_givenWins(self) -> None:
        """
        The level a source gave wins over a word in the text; a record
        without either is C{""}.
        """
        records = [(TS, "ERROR x", "info"), (TS, "WARN y", None), (TS, "z", None)]
        self.assertEqual(levelsOf(records), ["info", "warn", ""])
        self.assertEqual(ranks(records), [RANK["info"], RANK["warn"], -1])

    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["", "ERROR ", "[WARN] ", "04:00:00 INFO ", "x ERROR "]),
                st.text(max_size=20),
                st.sampled_from([None, *LEVELS]),
            ),
            max_size=20,
        )
    )
    def test_batchEqualsEach(self, parts: list[tuple[str, str, str | None]]) -> None:
        """
        The batch's levels are each record's own level, however the batch
        is made up.
        """
        records = [(TS, head + tail, level) for head, tail, level in parts]
        each = [level or detect(text) or "" for _, text, level in records]
        self.assertEqual(levelsOf(records), each if any(each) else None)


class ParseTests(SynchronousTestCase):
    """
    C{?level=} values.
    """

    def test_parse(self) -> None:
        """
        A level's name or a common spelling of it gives its rank.
        """
        self.assertEqual(parseLevel("warn"), RANK["warn"])
        self.assertEqual(parseLevel("WARNING"), RANK["warn"])
        self.assertEqual(parseLevel("fatal"), RANK["fatal"])

    def test_unknown(self) -> None:
        """
        Anything else is refused, naming the levels.
        """
        with self.assertRaises(ValueError) as caught:
            parseLevel("loud")
        self.assertEqual(
            str(caught.exception),
            "unknown level 'loud': use one of trace, debug, info, notice, warn, error, fatal",
        )
