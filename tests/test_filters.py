"""
Tests for L{logio.filters}: query parameters become unanchored RE2 searches.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from logio.filters import BadFilter, Filters, Pattern, compileFilter
from logio.topic import Topic

WEB = Topic("myapp", "web", "foobar")


class FiltersTests(SynchronousTestCase):
    """
    Query parameters become unanchored RE2 searches.
    """

    def test_unanchored(self) -> None:
        """
        C{bar$} matches C{open bar}; C{^web} does not match C{myweb}.
        """
        self.assertTrue(
            Filters.fromQuery({"app": "bar$"}).matchesTopic(Topic("open bar", "p", "h"))
        )
        self.assertFalse(Filters.fromQuery({"proc": "^web"}).matchesTopic(Topic("a", "myweb", "h")))

    def test_emptyIsNone(self) -> None:
        """
        An empty or missing pattern matches everything and costs nothing.
        """
        filters = Filters.fromQuery({"app": ""})
        self.assertEqual(filters, Filters())
        self.assertTrue(filters.matchesTopic(WEB))

    def test_patternsEqualByText(self) -> None:
        """
        Patterns are equal when their text is, however they were compiled,
        so subscribers that ask for the same C{log} pattern share one group.
        """
        compiled = compileFilter("log", "b+")
        assert compiled is not None
        self.assertEqual(compiled, Pattern("b+", lambda text: None))
        self.assertNotEqual(compiled, compileFilter("log", "b*"))
        self.assertEqual(hash(compiled), hash(Pattern("b+", print)))

    def test_badPattern(self) -> None:
        """
        A pattern RE2 rejects raises L{BadFilter} naming the field and the error.
        """
        e = self.assertRaises(BadFilter, Filters.fromQuery, {"host": "a(b"})
        self.assertEqual(e.name, "host")
        self.assertIn("'host'", str(e))
        self.assertIn("missing )", str(e))

    def test_backreferenceRejected(self) -> None:
        """
        RE2 syntax, not Python's: a backreference is an error, not a slow match.
        """
        self.assertRaises(BadFilter, compileFilter, "log", r"(a)\1")

    def test_literalIsSubstring(self) -> None:
        """
        A pattern without special characters is a case-sensitive substring
        search, like RE2's answer for it.
        """
        compiled = compileFilter("log", "ERROR 5")
        assert compiled is not None
        search = compiled.search
        self.assertTrue(search(b"x ERROR 500 y"))
        self.assertIsNone(search(b"error 500"))
        self.assertIs(compileFilter("log", "ERROR 5"), compiled)

    def test_unicodeCharacters(self) -> None:
        """
        Searches run on UTF-8 text and match characters, not bytes: C{.} is
        one character however many bytes it takes, and case folding and
        Unicode classes work.  A lone surrogate in a pattern, which no UTF-8
        text holds, matches nothing.
        """
        cases = [
            ("^.$", "é", True),
            ("^..$", "é", False),
            ("(?i)école", "ÉCOLE", True),
            (r"^\p{Greek}+$", "αβγ", True),
            ("^[^a]$", "€", True),
            ("x.y", "x\u2028y", True),
        ]
        for pattern, text, matches in cases:
            compiled = compileFilter("log", pattern)
            assert compiled is not None
            search = compiled.search
            self.assertEqual(bool(search(text.encode())), matches, (pattern, text))
        # "?" would be a quantifier: the surrogate must not turn into one.
        compiled = compileFilter("log", "a.\udc80")
        assert compiled is not None
        search = compiled.search
        self.assertIsNone(search(b"ab"))
        self.assertIsNone(search(b"ab?"))

    def test_bigRepetitionRefused(self) -> None:
        """
        A counted repetition above 100 is refused (it makes RE2 very slow);
        100 is fine.
        """
        e = self.assertRaises(BadFilter, compileFilter, "log", "a[ab]{999}c")
        self.assertIn("{100}", str(e))
        self.assertRaises(BadFilter, compileFilter, "log", "x{2,5000}")
        self.assertIsNotNone(compileFilter("log", "a[ab]{100}c"))

    def test_costlyPatternsRefused(self) -> None:
        """
        Patterns are costed before they are accepted: nested repetition (a
        big RE2 program) and patterns over 1 KiB are refused, saying why;
        ordinary ones pass.
        """
        for pattern, reason in [
            ("(.{1,100}){10}x", "too costly to match"),
            ("(a{1,30}b){20}", "too costly to match"),
            ("x" * 1025, "at most 1024 characters"),
            ("(a|b)" * 300, "at most 1024 characters"),
        ]:
            e = self.assertRaises(BadFilter, compileFilter, "log", pattern)
            self.assertIn(reason, str(e))
            self.assertLess(len(str(e)), 300)
        for pattern in [r"\d+ms", "(?i)error|warn|fatal", "a[ab]{100}c", "x" * 1024, r"^\S+@\S+$"]:
            self.assertIsNotNone(compileFilter("log", pattern))

    def test_linearTime(self) -> None:
        """
        C{(a+)+$} against a long line answers (RE2 never backtracks).
        """
        compiled = compileFilter("log", "(a+)+$")
        assert compiled is not None
        search = compiled.search
        self.assertIsNone(search(b"a" * 10000 + b"!"))
