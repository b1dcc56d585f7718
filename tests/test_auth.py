"""
Tests for L{logio.auth}: the tokens file, grants, and reloading.
"""

from __future__ import annotations

from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from logio.auth import (
    BAD_TOKEN,
    NO_TOKEN,
    NOT_ALLOWED,
    Denied,
    Tokens,
    TokensError,
    parseTokens,
)
from logio.interfaces import IGrant
from tests.support.tokens import tokensFile

SHOP = "shop-token-0123456789abcdef"
BOTH = "both-token-0123456789abcdef"
PUB = "pub-token-0123456789abcdef"
FILE = f"""\
# who may do what
{SHOP}  sub  ^shop$

{BOTH}  both shop|billing
{PUB}   pub  .*
"""


class ParseTests(SynchronousTestCase):
    """
    Reading the lines of a tokens file.
    """

    def test_roles(self) -> None:
        """
        Each line gives one token a role and an app pattern; comments and
        blank lines are skipped.
        """
        tokens = Tokens(tokensFile(self, FILE))
        self.assertEqual(len(tokens), 3)
        shop, both, pub = (tokens.grant(token) for token in (SHOP, BOTH, PUB))
        assert shop is not None and both is not None and pub is not None
        self.assertEqual((shop.publish, shop.subscribe), (False, True))
        self.assertEqual((both.publish, both.subscribe), (True, True))
        self.assertEqual((pub.publish, pub.subscribe), (True, False))
        self.assertTrue(verifyObject(IGrant, shop))

    def test_fullyAnchored(self) -> None:
        """
        The app pattern must match the whole app name, with or without
        anchors of its own.
        """
        grants = parseTokens(
            "a-long-enough-token-1 sub ^shop$\nb-long-enough-token-2 sub shop", "f"
        )
        for grant in grants.values():
            self.assertTrue(grant.allows("shop"))
            for app in ("shopping", "myshop", "shop2", "SHOP"):
                self.assertFalse(grant.allows(app), app)
        [either] = parseTokens("c-long-enough-token-3 sub shop|billing", "f").values()
        self.assertTrue(either.allows("billing"))
        self.assertFalse(either.allows("shop|billing"))

    def test_unknownTokens(self) -> None:
        """
        A token the file does not hold, an empty one or none has no grant,
        including a prefix or an extension of a real one.
        """
        tokens = Tokens(tokensFile(self, FILE))
        for token in (None, "", "nope", SHOP[:-1], SHOP + "x", SHOP.upper(), f" {SHOP}"):
            self.assertIsNone(tokens.grant(token), repr(token))

    def test_badLines(self) -> None:
        """
        A bad line is an error naming the file and the line, never the token.
        """
        secret = "s3cret-token-0123456789"
        for line, says in [
            (f"{secret} sub", "expected TOKEN pub|sub|both APP_REGEX"),
            (f"{secret} sub a b", "expected TOKEN pub|sub|both APP_REGEX"),
            (f"{secret} read shop", "the role must be pub, sub or both, not 'read'"),
            (f"{secret} sub (shop", "bad APP_REGEX '(shop'"),
        ]:
            error = self.assertRaises(TokensError, parseTokens, f"# first\n{line}\n", "tokens.txt")
            self.assertIn("tokens.txt, line 2: " + says, str(error))
            self.assertNotIn(secret, str(error))

    def test_repeatedToken(self) -> None:
        """
        A token given twice is an error: which of its lines counts would be
        a guess.
        """
        error = self.assertRaises(
            TokensError, parseTokens, f"{SHOP} sub a\n{SHOP} pub b\n", "tokens.txt"
        )
        self.assertIn("line 2: this token is given twice", str(error))

    def test_shortTokenWarned(self) -> None:
        """
        A short token works, with a warning that does not show it.
        """
        with capturedLogs() as events:
            [grant] = parseTokens("abc sub .*", "tokens.txt").values()
        self.assertTrue(grant.subscribe)
        [message] = [formatEvent(event) for event in events]
        self.assertIn("tokens.txt, line 1: a token of 3 characters can be guessed", message)
        self.assertNotIn("abc", message)

    def test_missingFile(self) -> None:
        """
        A tokens file that cannot be read is an error naming it.
        """
        path = self.mktemp()
        error = self.assertRaises(TokensError, Tokens, path)
        self.assertIn(f"cannot read the tokens file {path!r}", str(error))

    def test_grantsCompare(self) -> None:
        """
        Grants are equal when they allow the same.
        """
        first = parseTokens(f"{SHOP} sub shop\n{BOTH} sub shop\n{PUB} pub shop", "f")
        second = parseTokens(f"{SHOP} sub shop\n{BOTH} sub shops\n{PUB} both shop", "f")
        self.assertEqual(
            [a == b for a, b in zip(first.values(), second.values(), strict=True)],
            [True, False, False],
        )


class CheckTests(SynchronousTestCase):
    """
    L{Tokens.check}: the one check every port and source makes.
    """

    def test_verdicts(self) -> None:
        """
        No token, an unknown one, the wrong role and an app the token does
        not allow are each refused with their own cause; a token that may
        is let in with its grant.
        """
        tokens = Tokens(tokensFile(self, FILE))
        for token, role, app, cause, message in [
            (None, "publish", None, NO_TOKEN, "this server needs a token: say how"),
            ("", "subscribe", "shop", NO_TOKEN, "this server needs a token: say how"),
            ("nope", "publish", None, BAD_TOKEN, "unknown token"),
            (SHOP, "publish", "shop", NOT_ALLOWED, "this token may not publish"),
            (PUB, "subscribe", None, NOT_ALLOWED, "this token may not subscribe"),
            (BOTH, "publish", "web", NOT_ALLOWED, "this token may not publish to the app 'web'"),
        ]:
            with self.assertRaises(Denied) as caught:
                tokens.check(token, role, app, "say how")
            self.assertEqual((caught.exception.cause, str(caught.exception)), (cause, message))
        self.assertEqual(tokens.check(BOTH, "publish", "billing"), tokens.grant(BOTH))
        self.assertEqual(tokens.check(SHOP, "subscribe"), tokens.grant(SHOP))


class ReloadTests(SynchronousTestCase):
    """
    Reading the file again.
    """

    def test_reload(self) -> None:
        """
        A reload puts the file's new tokens in force, takes the removed ones
        away, and tells the watchers.
        """
        path = tokensFile(self, FILE)
        tokens = Tokens(path)
        told: list[bool] = []
        tokens.watch(lambda: told.append(True))
        with open(path, "w") as f:
            f.write(f"{PUB} pub shop\nnew-token-0123456789abc sub .*\n")
        with capturedLogs() as events:
            self.assertTrue(tokens.reload())
        self.assertIsNone(tokens.grant(SHOP))
        grant = tokens.grant(PUB)
        assert grant is not None
        self.assertFalse(grant.allows("billing"))
        self.assertIsNotNone(tokens.grant("new-token-0123456789abc"))
        self.assertEqual(told, [True])
        self.assertIn(f"Reloaded 2 tokens from {path}", formatEvent(events[-1]))

    def test_badReloadKeepsTokens(self) -> None:
        """
        A reload of a bad file logs why and keeps the tokens in force; the
        watchers are not told.
        """
        path = tokensFile(self, FILE)
        tokens = Tokens(path)
        told: list[bool] = []
        tokens.watch(lambda: told.append(True))
        with open(path, "w") as f:
            f.write(f"{SHOP} sub (\n")
        with capturedLogs() as events:
            self.assertFalse(tokens.reload())
        self.assertIsNotNone(tokens.grant(SHOP))
        self.assertEqual(told, [])
        [message] = [formatEvent(event) for event in events]
        self.assertIn("Kept the tokens in force", message)
        self.assertNotIn(SHOP, message)

    def test_emptyFileWarned(self) -> None:
        """
        A file with no token lets nobody in, and says so.
        """
        with capturedLogs() as events:
            tokens = Tokens(tokensFile(self, "# nobody yet\n"))
        self.assertEqual(len(tokens), 0)
        self.assertIn("holds no token", formatEvent(events[0]))
