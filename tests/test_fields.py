"""
Tests for L{logio.fields}: what a topic field may hold, and what the text
output shows escaped.
"""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from logio.fields import (
    CLEAN,
    CLEAN_BUT_NEWLINE,
    MAX_TOPIC_FIELD,
    SUSPECT,
    UNSAFE,
    acceptable,
    escape,
    escapeKeepingSGR,
    fieldProblem,
)

#: Every character the text output must not show raw (as the issue lists
#: them): C0 but tab and newline, DEL, C1, U+2028/2029, bidi controls.
FORGING = (
    [chr(c) for c in range(0x20) if chr(c) not in "\t\n"]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u2028", "\u2029", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"]
    + ["\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f", "\u061c"]
)


class EscapeTests(SynchronousTestCase):
    """
    What the text output escapes.
    """

    def test_forgingEscaped(self) -> None:
        """
        Each forging character becomes C{\\uXXXX}, its own code point.
        """
        for char in FORGING:
            self.assertEqual(escape(f"a{char}b"), f"a\\u{ord(char):04x}b")

    def test_restKept(self) -> None:
        """
        Tab, newline, printable ASCII and other non-ASCII text are kept.
        """
        text = "tab\there\nnext ~ caf\u00e9 \u2014 \u20ac \U0001f600 \u00a0"
        self.assertEqual(escape(text), text)

    def test_suspectBytes(self) -> None:
        """
        The UTF-8 encoding of every forging character holds a SUSPECT byte,
        so text whose bytes hold none needs no escape; CLEAN is the rest.
        """
        for char in FORGING:
            encoded = char.encode()
            self.assertTrue(encoded.translate(None, CLEAN), repr(char))
        self.assertEqual(set(CLEAN) | set(SUSPECT), set(range(256)))
        self.assertFalse(set(CLEAN) & set(SUSPECT))
        self.assertFalse(b"plain ASCII\tline\n".translate(None, CLEAN))
        self.assertEqual(set(CLEAN_BUT_NEWLINE), set(CLEAN) - {10})
        self.assertEqual(b"a\nb\x1b\n".translate(None, CLEAN_BUT_NEWLINE), b"\n\x1b\n")

    def test_exhaustive(self) -> None:
        """
        Over the Basic Multilingual Plane, UNSAFE is exactly the forging
        characters.
        """
        found = {chr(c) for c in range(0x10000) if UNSAFE.fullmatch(chr(c))}
        self.assertEqual(found, set(FORGING))


class FieldTests(SynchronousTestCase):
    """
    What a topic field may hold.
    """

    def test_good(self) -> None:
        """
        Names, dots, colons (IPv6 hosts), dashes and non-ASCII letters are fine.
        """
        for value in ("myapp", "web.1", "fe80::1", "i-10-34-20-12", "caf\u00e9", "x" * 256):
            self.assertIsNone(fieldProblem("host", value), value)

    def test_bad(self) -> None:
        """
        Whitespace, brackets and forging characters are refused, named.
        """
        for value, named in [
            ("a b", "a space"),
            ("a\tb", "U+0009"),
            ("a\u00a0b", "U+00A0"),
            ("web]", "']'"),
            ("[x", "'['"),
            *[(f"a{char}", f"U+{ord(char):04X}") for char in FORGING],
        ]:
            problem = fieldProblem("proc", value)
            assert problem is not None, repr(value)
            self.assertIn(f"'proc' holds {named}" if "U+" not in named else named, problem)

    def test_length(self) -> None:
        """
        A field longer than MAX_TOPIC_FIELD characters is refused.
        """
        self.assertIn("longer than 256", fieldProblem("app", "a" * 257) or "")

    def test_reservedApp(self) -> None:
        """
        Only the app field may not be "logio"; a proc or host may.
        """
        self.assertIn("server's own", fieldProblem("app", "logio") or "")
        self.assertIsNone(fieldProblem("proc", "logio"))
        self.assertIsNone(fieldProblem("app", "logio-web"))

    def test_acceptable(self) -> None:
        """
        A default is made acceptable: what a field may not hold becomes "_",
        and it is cut to MAX_TOPIC_FIELD characters.
        """
        made = acceptable("my host[1]\x1b" + "x" * 300)
        self.assertTrue(made.startswith("my_host_1__x"))
        self.assertEqual(len(made), MAX_TOPIC_FIELD)
        self.assertIsNone(fieldProblem("host", made))
        self.assertIsNone(re.search(r"\s", made))


class KeepingSGRTests(SynchronousTestCase):
    """
    What the text output shows with C{ansi=keep}: colour sequences raw,
    everything else as L{escape} shows it.
    """

    def test_sgrKept(self) -> None:
        """
        Colour, bold and reset sequences pass; a line that has any ends
        with a reset, so its colour stops there.
        """
        self.assertEqual(
            escapeKeepingSGR("\x1b[1;31mred\x1b[0m plain\nnext \x1b[38;5;208mx"),
            "\x1b[1;31mred\x1b[0m plain\x1b[0m\nnext \x1b[38;5;208mx\x1b[0m",
        )

    def test_othersEscaped(self) -> None:
        """
        Every other escape sequence and forging character is shown escaped,
        as without C{ansi=keep}: cursor moves, screen clears, titles, and an
        SGR sequence too long to be one.
        """
        for text in (
            "\x1b[2J\x1b[H",
            "\x1b[1A over",
            "\x1b]0;title\x07",
            "\x1b[" + "1;" * 40 + "m",
            *FORGING,
        ):
            self.assertEqual(escapeKeepingSGR(text), escape(text), repr(text))
        self.assertEqual(escapeKeepingSGR("\x1b[31m\x1b[2K"), "\x1b[31m\\u001b[2K\x1b[0m")
