# -*- test-case-name: tests.test_gate -*-
"""
Who the subscriber port lets in, before any resource sees a request.

With C{--auth}, every path but C{/healthz} needs a token: C{Authorization:
Bearer TOKEN} (or C{Basic} with the token as the password, as curl sends
C{https://x:TOKEN@host/}), or C{?token=TOKEN}.  No token, or one the file
does not hold, is a 401; a token without the right role is a 403.  The
request's L{logio.auth.Grant} is then a component of the request (see
L{logio.auth.grantOf}),
and the resources restrict what they show to the apps it allows.

Without C{--auth}, anyone who can reach the port reads every app.  A web
page can make a browser reach C{localhost}, but the browser keeps the
answer from the page unless the page's own host name points there (DNS
rebinding): so only requests whose C{Host} is an IP address, C{localhost}
(or a name under it) or a C{--server-name} are answered; others get a 403.
Requests over a UNIX socket, which no browser reaches, are not checked.
"""

from __future__ import annotations

import binascii
import ipaddress
from base64 import b64decode
from typing import Iterable, Optional

from twisted.web.resource import Resource
from twisted.web.server import Request

from logio.auth import NOT_ALLOWED, Denied, Tokens
from logio.http import reply
from logio.interfaces import IGrant
from logio.net import describePeer
from logio.refusals import Refusals

#: Who may use a route (see L{logio.web.site.ROUTES}): anyone (the paths
#: that hold no logs), a token that may subscribe, one that may publish.
OPEN = "open"
SUBSCRIBE = "subscribe"
PUBLISH = "publish"
#: How a request presents its token.
HEADER_TOKEN = "Authorization: Bearer TOKEN, or ?token=TOKEN"
#: What a 401 asks for.
CHALLENGE = b'Bearer realm="logio"'


class Refusal(Resource):
    """
    A request refused before it reached a resource: a status, a one-line
    body, counted and logged as a refusal.
    """

    isLeaf = True

    def __init__(
        self,
        code: int,
        message: str,
        cause: str,
        refusals: Refusals,
        challenge: bool = False,
        side: str = "subscriber",
    ) -> None:
        super().__init__()
        self.code = code
        self.message = message
        self._cause = cause
        self._refusals = refusals
        self._challenge = challenge
        self._side = side

    def _log(self, request: Request) -> None:
        peer = describePeer(request.getClientAddress())
        self._refusals.refuse(self._side, self._cause, f"{peer}: {self.message}")

    def render(self, request: Request) -> bytes:
        self._log(request)
        if self._challenge:
            request.setHeader(b"www-authenticate", CHALLENGE)
        return reply(request, self.code, self.message)

    def early(self, request: Request) -> None:
        """
        Refuse C{request} before its body arrives: answer at once and close
        the connection (see L{logio.web.SubscriberChannel.answer}).
        """
        self._log(request)
        headers = [(b"www-authenticate", CHALLENGE)] if self._challenge else []
        request.channel.answer(self.code, self.message, headers)  # type: ignore[attr-defined]


def presented(request: Request) -> Optional[str]:
    """
    The token a request presents: in C{Authorization} (C{Bearer}, or the
    password of C{Basic}), else in C{?token=}.
    """
    header = request.getHeader(b"authorization")
    if header:
        scheme, _, credentials = header.decode("latin-1").strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return credentials.strip() or None
        if scheme == "basic":
            try:
                decoded = b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, _, password = decoded.partition(":")
            return password or user or None
    values = (request.args or {}).get(b"token")
    return values[0].decode("utf-8", "replace") if values else None


def _hostName(header: bytes) -> str:
    """
    The name in a C{Host} header, without its port, lower case.
    """
    text = header.decode("ascii", "replace").strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


def _literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Gate:
    """
    Decide, from its path and headers, whether a request may go on.

    @ivar tokens: The tokens of C{--auth}, or L{None} without it.
    @ivar serverNames: The host names a server without C{--auth} answers
        to, besides IP addresses and C{localhost}.
    """

    def __init__(
        self, refusals: Refusals, tokens: Optional[Tokens] = None, serverNames: Iterable[str] = ()
    ) -> None:
        self.refusals = refusals
        self.tokens = tokens
        self.serverNames = frozenset(name.lower().rstrip(".") for name in serverNames)

    def admit(self, request: Request, role: str) -> Optional[Refusal]:
        """
        Let C{request} for a route of C{role} go on (L{None}), with its
        grant set, or return the refusal to render instead.
        """
        side = "publisher" if role == PUBLISH else "subscriber"
        if self.tokens is None:
            if role == PUBLISH and request.getHeader(b"origin") is not None:
                # A web page's request: a browser sends a cross-origin POST
                # with a text body without asking first.
                return Refusal(
                    403,
                    "a request from a web page (with an Origin header) may not publish "
                    "to a server without --auth",
                    "cross-origin publish",
                    self.refusals,
                    side=side,
                )
            return self._checkHost(request)
        if role == OPEN:
            return None
        try:
            grant = self.tokens.check(presented(request), role, howTo=HEADER_TOKEN)
        except Denied as e:
            code = 403 if e.cause == NOT_ALLOWED else 401
            return Refusal(code, str(e), e.cause, self.refusals, challenge=code == 401, side=side)
        request.setComponent(IGrant, grant)
        return None

    def _checkHost(self, request: Request) -> Optional[Refusal]:
        header = request.getHeader(b"host")
        # No browser sends a request without a Host header, or over a UNIX
        # socket.
        if header is None or getattr(request.getHost(), "host", None) is None:
            return None
        name = _hostName(header)
        if (
            _literal(name)
            or name == "localhost"
            or name.endswith(".localhost")
            or name in self.serverNames
        ):
            return None
        return Refusal(
            403,
            f"Host {name[:100]!r} is not answered: without --auth this server answers "
            "only requests for an IP address, localhost or a --server-name "
            "(a defence against DNS rebinding)",
            "host not answered",
            self.refusals,
        )
