# -*- test-case-name: tests.test_auth -*-
"""
Who may publish and who may read: the tokens file of C{--auth}.

One token per line, C{#} comments and blank lines allowed::

    # TOKEN                             ROLE  APP_REGEX
    3f9c1e0b7a5d4c2e8f6a1b3c5d7e9f01    pub   shop
    b2d4f6a8c0e1f3a5b7c9d1e3f5a7b9c1    sub   shop|billing
    0a1b2c3d4e5f60718293a4b5c6d7e8f9    both  .*

A role is C{pub} (publish), C{sub} (subscribe, and read C{/topics} and
C{/metrics}) or C{both}; C{APP_REGEX} is RE2, matched against the whole app
name (C{shop} allows C{shop}, never C{shopping}).  Tokens are looked up in
by digest and never logged; a bad file is an error naming the line,
never the token.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Optional

import re2
from attrs import field, frozen
from twisted.logger import Logger
from twisted.python.components import Componentized
from zope.interface import implementer

from logio.interfaces import IGrant

#: What each role may do: (publish, subscribe).
ROLES = {"pub": (True, False), "sub": (False, True), "both": (True, True)}

#: Tokens shorter than this are accepted with a warning: they can be guessed.
SHORT_TOKEN = 16

#: Why a token is refused, as the refusal log names it.
NO_TOKEN = "no token"
BAD_TOKEN = "unknown token"
NOT_ALLOWED = "token not allowed"

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


_log = Logger()


class TokensError(Exception):
    """
    The tokens file cannot be read or holds a bad line; the message says
    which line and why, without the token.
    """


class Denied(Exception):
    """
    A token does not let its bearer do what it asked; the message says why
    (never with the token).

    @ivar cause: L{NO_TOKEN}, L{BAD_TOKEN} or L{NOT_ALLOWED}.
    """

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


@implementer(IGrant)
@frozen
class Grant:
    """
    What one token may do.  Grants are equal when they allow the same, so a
    reload can tell which tokens changed.

    @ivar publish: Whether it may publish.
    @ivar subscribe: Whether it may subscribe and read the server's reports.
    @ivar apps: The apps it may publish to or read, as an RE2 pattern
        matched against the whole app name.
    """

    publish: bool
    subscribe: bool
    apps: str
    _fullmatch: Callable[[bytes], object] = field(eq=False, repr=False)

    def allows(self, app: str) -> bool:
        """
        Whether this token may publish to or read the app C{app}.
        """
        return self._fullmatch(app.encode("utf-8", "replace")) is not None

    def check(self, app: str, role: str = "publish") -> None:
        """
        Check that this token may C{role} to or from the app C{app}.

        @raise Denied: If it may not.
        """
        if not self.allows(app):
            raise Denied(f"this token may not {role} to the app {app!r}", NOT_ALLOWED)


def grantOf(request: Componentized) -> Optional[Grant]:
    """
    What a request's token allows, or L{None} on a server without C{--auth}
    (where everything is allowed): the gate of the subscriber port makes
    the grant a component of the request (see L{logio.web.gate}).
    """
    grant = request.getComponent(IGrant)
    assert grant is None or isinstance(grant, Grant)
    return grant


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parseTokens(text: str, source: str) -> dict[bytes, Grant]:
    """
    Read a tokens file.

    @param source: The file's name, for messages.
    @return: The grant of each token, by the SHA-256 digest of the token.
    @raise TokensError: If a line is not C{TOKEN ROLE APP_REGEX}, names an
        unknown role or a bad pattern, or repeats a token.
    """
    grants: dict[bytes, Grant] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{source}, line {number}"
        if len(words) != 3:
            raise TokensError(f"{where}: expected TOKEN pub|sub|both APP_REGEX")
        token, role, apps = words
        if role not in ROLES:
            raise TokensError(f"{where}: the role must be pub, sub or both, not {role!r}")
        try:
            compiled = re2.compile(f"(?:{apps})".encode(), _OPTIONS)
        except re2.error as e:
            raise TokensError(f"{where}: bad APP_REGEX {apps!r}: {e}") from None
        digest = _digest(token)
        if digest in grants:
            raise TokensError(f"{where}: this token is given twice")
        if len(token) < SHORT_TOKEN:
            _log.warn(
                "{where}: a token of {length} characters can be guessed; "
                "use one like `openssl rand -hex 32` makes",
                where=where,
                length=len(token),
            )
        publish, subscribe = ROLES[role]
        grants[digest] = Grant(publish, subscribe, apps, compiled.fullmatch)
    return grants


class Tokens:
    """
    The tokens of a file, reloaded on demand (on SIGHUP, see
    L{logio.server.services.AuthService}); what was allowed stays allowed until a
    reload succeeds.

    @ivar path: The tokens file.
    """

    log = Logger()

    def __init__(self, path: str) -> None:
        """
        @raise TokensError: If the file cannot be read or holds a bad line.
        """
        self.path = path
        self._grants = self._load()
        self._watchers: list[Callable[[], None]] = []

    def _load(self) -> dict[bytes, Grant]:
        try:
            with open(self.path, encoding="utf-8") as tokensFile:
                text = tokensFile.read()
        except (OSError, UnicodeDecodeError) as e:
            raise TokensError(f"cannot read the tokens file {self.path!r}: {e}") from None
        grants = parseTokens(text, self.path)
        if not grants:
            self.log.warn("The tokens file {path} holds no token: nobody is let in", path=self.path)
        return grants

    def __len__(self) -> int:
        return len(self._grants)

    def grant(self, token: Optional[str]) -> Optional[Grant]:
        """
        The grant of C{token}, or L{None} if it is not a token of the file.
        The time this takes says nothing about how much of a token matched.
        """
        if not token:
            return None
        # Looked up by digest: how long a lookup takes depends on the bytes
        # of the digest, which say nothing about those of the token.
        return self._grants.get(_digest(token))

    def check(
        self, token: Optional[str], role: str, app: Optional[str] = None, howTo: str = ""
    ) -> Grant:
        """
        The one check of a token, for every port and source: may C{token}
        C{role} (C{publish} or C{subscribe}), to or from C{app} if given?

        @param howTo: How to present a token where it was missing.
        @return: Its grant.
        @raise Denied: If it may not, saying why.
        """
        if not token:
            raise Denied(f"this server needs a token: {howTo}", NO_TOKEN)
        grant = self.grant(token)
        if grant is None:
            raise Denied("unknown token", BAD_TOKEN)
        if not (grant.publish if role == "publish" else grant.subscribe):
            raise Denied(f"this token may not {role}", NOT_ALLOWED)
        if app is not None:
            grant.check(app, role)
        return grant

    def watch(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} after every successful reload, to check what was
        let in under the old tokens.
        """
        self._watchers.append(callback)

    def reload(self) -> bool:
        """
        Read the file again.  If it cannot be read or holds a bad line, say
        so and keep the tokens held now.

        @return: Whether the new tokens are in force.
        """
        try:
            grants = self._load()
        except TokensError as e:
            self.log.error("Kept the tokens in force: {error}", error=str(e))
            return False
        self._grants = grants
        self.log.info("Reloaded {count} tokens from {path}", count=len(grants), path=self.path)
        for watcher in self._watchers:
            watcher()
        return True
