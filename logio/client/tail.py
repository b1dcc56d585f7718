# -*- test-case-name: tests.test_client_tail -*-
"""
C{logio tail}: subscribe over plain HTTP (no Twisted) to the server's
event stream, print its records as they come (as text or JSON lines, see
L{logio.client.events}), and when the stream ends or fails, reconnect at
once and then every 2 s at most, resuming after the last record printed.
"""

from __future__ import annotations

import argparse
import http.client
import random
import re
import socket
import ssl
import string
import sys
import time
from typing import BinaryIO, NamedTuple, TextIO
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit

from logio.client.events import EventReader, Printer, noticeMessage
from logio.client.publisher import BACKOFF_MIN
from logio.ports import SUBSCRIBE_PORT

#: The longest wait between two attempts to reconnect, so that a server
#: that restarts is found again within about as long.
RECONNECT_MAX = 2.0


class _Refused(Exception):
    """
    The server answered the subscription with a client error (4xx).
    """


class OutputClosed(Exception):
    """
    Standard output was closed by its reader.
    """


class Subscription(NamedTuple):
    """
    Where C{logio tail} subscribes, and how: see L{subscriptionURL}.
    """

    scheme: str
    host: str
    port: int
    #: The path and query of the first request.
    path: str
    #: The path and query of every later one: the same without C{tail=},
    #: as a reconnection resumes after the last record printed instead.
    again: str
    #: C{False} for C{follow=0}: the response ends after the replay.
    follow: bool
    #: C{True} for C{--json} or C{format=json}: one JSON object per line.
    json: bool
    #: C{True} for C{ansi=keep}, C{False} for C{ansi=escape}, L{None} for
    #: neither: then colour sequences are kept when colours are on.
    keepSGR: bool | None
    #: The URL's C{last_event_id}: where the first request resumes.
    lastEventId: str | None


#: The subscription parameters that flags of the same name set.
_FILTERS = ("app", "proc", "host", "log", "level", "since", "until")
#: The formats logio tail prints; it reads the server's C{format=sse}.
_PRINTED = ("", "text", "json")
#: The C{follow=} values that mean no.
_NO = ("0", "false", "no")
#: C{ansi=} values: whether the text keeps colour sequences raw.
_ANSI = {"keep": True, "escape": False}


def subscriptionURL(args: argparse.Namespace) -> Subscription:
    """
    Where and how C{logio tail} subscribes, from its parsed arguments.

    The URL is C{http://} (port 80 by default) or C{https://} (443); a bare
    C{HOST[:PORT]} (no scheme) is C{http://} on port 7702 by default; no URL
    at all is C{http://localhost:7702/}. Each flag replaces the URL's
    parameter of the same name, or is added at the end. What is requested
    is always C{format=sse} (its ids let a reconnection resume); the URL's
    C{format=text} or C{format=json} says what to print, and its
    C{last_event_id=} goes in a header.

    @raise ValueError: the URL is none of those, or asks for another format.
    """
    url = f"localhost:{SUBSCRIBE_PORT}" if args.url is None else args.url
    bare = _SCHEME.match(url) is None
    parts = urlsplit(f"http://{url}" if bare else url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"URL {url!r} must look like http://HOST[:PORT]/?app=RE, https://... or HOST[:PORT]"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"URL {url!r} has a bad port") from None
    if port is None:
        port = SUBSCRIBE_PORT if bare else 443 if parts.scheme == "https" else 80
    given = _firstValues(_sendable(parts.query))
    if not args.json and given.get("format", "") not in _PRINTED:
        raise ValueError(
            f"URL {url!r} asks for format={given['format']}: logio tail prints text, "
            "or JSON lines with --json or format=json"
        )
    flags: dict[str, str | None] = {
        name: getattr(args, name) for name in _FILTERS if getattr(args, name) is not None
    }
    if args.tail is not None:
        flags["tail"] = str(args.tail) if args.tail else None
    if args.follow is not None:
        flags["follow"] = "1" if args.follow else "0"
    flags["format"] = "sse"
    flags["last_event_id"] = None
    query = _withParameters(_sendable(parts.query), flags)
    path = _sendable(parts.path) or "/"
    sent = _firstValues(query)
    return Subscription(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        path=_withQuery(path, query),
        # A reconnection resumes after the last record printed: neither the
        # tail nor the start of the range is asked for again.
        again=_withQuery(path, _withParameters(query, {"tail": None, "since": None})),
        # A range with an end ends the stream when it is over: then there
        # is nothing to reconnect for.
        follow=sent.get("follow", "1").lower() not in _NO and not sent.get("until"),
        json=args.json or given.get("format") == "json",
        keepSGR=_ANSI.get(sent.get("ansi", "").lower()),
        lastEventId=given.get("last_event_id") or None,
    )


def _firstValues(query: str) -> dict[str, str]:
    """
    The parameters of C{query} as the server reads them: the first value
    of each counts.
    """
    return {name: values[0] for name, values in parse_qs(query, keep_blank_values=True).items()}


#: What a URL with a scheme starts with (RFC 3986).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _sendable(text: str) -> str:
    """
    C{text} with what cannot go in a request line as it is (spaces, control
    characters and non-ASCII ones) percent-encoded; the rest, C{%XX} escapes
    included, kept as given.
    """
    return quote(text, safe=string.punctuation)


def _withParameters(query: str, replace: dict[str, str | None]) -> str:
    """
    C{query} with each parameter named in C{replace} set to its value
    (URL-encoded, in the place of the first parameter of that name, or at
    the end) and the others of that name removed; a value of C{None} removes
    them all. The rest of C{query} is kept byte for byte.
    """
    pieces = []
    done = set()
    for piece in query.split("&") if query else []:
        name = unquote_plus(piece.partition("=")[0])
        if name not in replace:
            pieces.append(piece)
        elif name not in done:
            done.add(name)
            if (value := replace[name]) is not None:
                pieces.append(f"{quote(name, safe='')}={quote(value, safe='')}")
    for name, value in replace.items():
        if name not in done and value is not None:
            pieces.append(f"{quote(name, safe='')}={quote(value, safe='')}")
    return "&".join(pieces)


def _withQuery(path: str, query: str) -> str:
    """
    C{path}, then C{?query} unless the query is empty.
    """
    return f"{path}?{query}" if query else path


def tail(
    subscription: Subscription, color: str, ca: str | None, token: str | None, stdout: TextIO
) -> int:
    """
    Print the subscription's records until interrupted, reconnecting and
    resuming after the last record printed; without follow, until the
    response ends.
    """
    if ca is not None and subscription.scheme != "https":
        raise ValueError("--ca is only for https:// URLs")
    context = None
    if subscription.scheme == "https":
        try:
            context = ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot load the CA file {ca!r}: {e}") from None
    colour = not subscription.json and (color == "always" or (color == "auto" and stdout.isatty()))
    keepSGR = colour if subscription.keepSGR is None else subscription.keepSGR
    printer = Printer(subscription.json, colour, keepSGR, subscription.host)
    return _Follower(subscription, context, token, printer, stdout.buffer).run()


class _Follower:
    """
    One C{logio tail}: its connections, one after another, and the id of
    the last record printed, which the next connection resumes after.
    """

    def __init__(
        self,
        subscription: Subscription,
        context: ssl.SSLContext | None,
        token: str | None,
        printer: Printer,
        out: BinaryIO,
    ) -> None:
        self._subscription = subscription
        self._context = context
        self._printer = printer
        self._out = out
        host, port = subscription.host, subscription.port
        self._where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._headers = {"Accept": "text/event-stream"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._path = subscription.path
        #: The id of the last record printed (C{Last-Event-ID}).
        self._resume = subscription.lastEventId
        #: Whether the user was told that the stream was lost.
        self._away = False

    def run(self) -> int:
        """
        Follow the subscription; returns the exit status.
        """
        follow = self._subscription.follow
        where = self._where
        delay = BACKOFF_MIN
        while True:
            try:
                problem, lasted = self._stream()
                if not follow:
                    return 0
                if lasted > 1.0:
                    # Only a stream that lasted resets the backoff: a server
                    # that answers and hangs up at once is not redialled fast.
                    delay = BACKOFF_MIN
            except _Refused as e:
                _say(f"logio tail: the server refused the subscription: {e}")
                return 1
            except ssl.SSLCertVerificationError as e:
                # Retrying cannot help: the certificate will not change.
                _say(f"logio tail: {where}: certificate verify failed: {e.verify_message}")
                return 1
            except http.client.IncompleteRead:
                problem = "the stream was cut short"
            except http.client.RemoteDisconnected:
                problem = "the server closed the connection without an answer"
                if self._context is None:
                    problem += " (TLS server? then use https://)"
            except (OSError, http.client.HTTPException) as e:
                problem = str(e) or e.__class__.__name__
            if not follow:
                # Reconnecting would replay the history again, or nothing at all.
                _say(f"logio tail: {where}: {problem}")
                return 1
            if not self._away:
                # Once, however many attempts it takes.
                _say(f"logio tail: {where}: {problem}; reconnecting")
                self._away = True
            time.sleep(min(delay * random.uniform(1.0, 1.5), RECONNECT_MAX))
            delay = min(delay * 2, RECONNECT_MAX)

    def _stream(self) -> tuple[str, float]:
        """
        Connect, subscribe and print the stream until it ends.

        @return: Why it ended, and how long it lasted in seconds.
        @raise _Refused: The server refused the subscription.
        """
        connection = _connect(self._subscription.host, self._subscription.port, self._context)
        try:
            headers = dict(self._headers)
            if self._resume is not None:
                headers["Last-Event-ID"] = self._resume
            connection.request("GET", self._path, headers=headers)
            response = connection.getresponse()
            if 400 <= response.status < 500:
                body = response.read(4096).decode("utf-8", "replace").strip()
                first = body.splitlines()[0] if body else ""
                raise _Refused(f"{response.status} {response.reason}: {first}")
            if response.status != 200:
                raise OSError(f"{response.status} {response.reason}")
            # The replay, if any, has begun: from now on the last record
            # printed says where to resume.
            self._path = self._subscription.again
            if self._away:
                _say(f"logio tail: connected to {self._where} again")
                self._away = False
            started = time.monotonic()
            said = self._print(response)
            return said or "the server ended the stream", time.monotonic() - started
        finally:
            connection.close()

    def _print(self, response: http.client.HTTPResponse) -> str | None:
        """
        Print the streamed events as they arrive, until the stream ends; an
        event cut short by a broken connection is not printed (a
        reconnection gets it again).

        @return: The server's last words: the message of the notice that
            ended the stream, if one did.
        """
        reader = EventReader()
        last = None
        while chunk := response.read1(65536):
            events = reader.feed(chunk)
            if not events:
                continue
            _write(self._out, b"".join([self._printer.show(event) for event in events]))
            for event in events:
                if event.id:
                    self._resume = event.id
                last = noticeMessage(event)
        return last


def _connect(host: str, port: int, context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    """
    Open an HTTP(S) connection with a connect timeout but no read timeout
    (a quiet subscription is fine), and TCP keepalive to notice a dead server.
    """
    connection: http.client.HTTPConnection
    if context is None:
        connection = http.client.HTTPConnection(host, port, timeout=10)
    else:
        connection = http.client.HTTPSConnection(host, port, timeout=10, context=context)
    connection.connect()
    sock = connection.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in [("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)]:
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    sock.settimeout(None)
    return connection


def _write(out: BinaryIO, data: bytes) -> None:
    """
    Write and flush at once, so that lines show as they come.

    @raise OutputClosed: the reader went away.
    """
    try:
        out.write(data)
        out.flush()
    except BrokenPipeError:
        raise OutputClosed() from None


def _say(message: str) -> None:
    """
    One line on stderr.
    """
    print(message, file=sys.stderr, flush=True)
