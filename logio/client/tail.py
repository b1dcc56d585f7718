# -*- test-case-name: tests.test_client_cli -*-
"""
C{logio tail}: subscribe over plain HTTP (no Twisted), print the lines as
they come, reconnect with backoff when the server goes away, and colour each
topic's C{app[proc]} when printing to a terminal.
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
import zlib
from typing import BinaryIO, NamedTuple, TextIO
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit

from logio.client.publisher import BACKOFF_MAX, BACKOFF_MIN
from logio.ports import SUBSCRIBE_PORT

# Colours for app[proc]: green, yellow, blue, magenta, cyan and their bright
# variants; the server's own notices are bold red.
_PALETTE = [b"32", b"33", b"34", b"35", b"36", b"92", b"93", b"94", b"95", b"96"]
_NOTICE = b"1;31"


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
    #: The path and query of every later one: the same without C{tail=}, so
    #: that no line is replayed twice.
    again: str
    #: C{False} for C{follow=0}: the response ends after the replay.
    follow: bool
    #: C{True} for C{format=json}: one JSON object per line.
    json: bool


#: The subscription parameters that flags of the same name set.
_FILTERS = ("app", "proc", "host", "log")


def subscriptionURL(args: argparse.Namespace) -> Subscription:
    """
    Where and how C{logio tail} subscribes, from its parsed arguments.

    The URL is C{http://} (port 80 by default) or C{https://} (443); a bare
    C{HOST[:PORT]} (no scheme) is C{http://} on port 7702 by default; no URL
    at all is C{http://localhost:7702/}. Each flag replaces the URL's
    parameter of the same name, or is added at the end.

    @raise ValueError: the URL is none of those.
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
    flags: dict[str, str | None] = {
        name: getattr(args, name) for name in _FILTERS if getattr(args, name) is not None
    }
    if args.tail is not None:
        flags["tail"] = str(args.tail) if args.tail else None
    if args.follow is not None:
        flags["follow"] = "1" if args.follow else "0"
    if args.json:
        flags["format"] = "json"
    query = _withParameters(_sendable(parts.query), flags)
    path = _sendable(parts.path) or "/"
    # As the server reads it: the first value of a parameter counts.
    sent = parse_qs(query, keep_blank_values=True)
    return Subscription(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        path=_withQuery(path, query),
        again=_withQuery(path, _withParameters(query, {"tail": None})),
        follow=sent.get("follow", [""])[0] != "0",
        json=sent.get("format", [""])[0] == "json",
    )


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
    Print the subscription's lines until interrupted, reconnecting with
    backoff; without follow, until the response ends.
    """
    if ca is not None and subscription.scheme != "https":
        raise ValueError("--ca is only for https:// URLs")
    context = None
    if subscription.scheme == "https":
        try:
            context = ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot load the CA file {ca!r}: {e}") from None
    host, port = subscription.host, subscription.port
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    colour = not subscription.json and (color == "always" or (color == "auto" and stdout.isatty()))
    headers = {"Accept": "application/x-ndjson" if subscription.json else "text/plain"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    out = stdout.buffer
    path = subscription.path
    delay = BACKOFF_MIN
    lost = False
    while True:
        try:
            connection = _connect(host, port, context)
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                if 400 <= response.status < 500:
                    body = response.read(4096).decode("utf-8", "replace").strip()
                    first = body.splitlines()[0] if body else ""
                    raise _Refused(f"{response.status} {response.reason}: {first}")
                if response.status != 200:
                    raise OSError(f"{response.status} {response.reason}")
                # The replay, if any, has begun: a reconnection must not ask
                # for it again.
                path = subscription.again
                if lost:
                    _say(f"logio tail: connected to {where} again")
                    lost = False
                started = time.monotonic()
                _copy(response, out, _Painter() if colour else None)
                if not subscription.follow:
                    return 0
                problem = "the server ended the stream"
                if time.monotonic() - started > 1.0:
                    # Only a stream that lasted resets the backoff: a server
                    # that answers and hangs up at once is not redialled fast.
                    delay = BACKOFF_MIN
            finally:
                connection.close()
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
            if context is None:
                problem += " (TLS server? then use https://)"
        except (OSError, http.client.HTTPException) as e:
            problem = str(e) or e.__class__.__name__
        if not subscription.follow:
            # Reconnecting would replay the history again, or nothing at all.
            _say(f"logio tail: {where}: {problem}")
            return 1
        wait = min(delay * random.uniform(1.0, 1.5), BACKOFF_MAX)
        _say(f"logio tail: {where}: {problem}; reconnecting in {wait:.1f} s")
        lost = True
        time.sleep(wait)
        delay = min(delay * 2, BACKOFF_MAX)


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


def _copy(response: http.client.HTTPResponse, out: BinaryIO, painter: _Painter | None) -> None:
    """
    Copy the streamed body to C{out} as it arrives, until it ends; a line cut
    short by a broken connection is ended with a newline.
    """
    last = b"\n"
    try:
        while chunk := response.read1(65536):
            last = chunk[-1:]
            _write(out, chunk if painter is None else painter.paint(chunk))
    finally:
        if last != b"\n":
            _write(out, b"\n" if painter is None else painter.paint(b"\n"))


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


class _Painter:
    """
    Colour the C{app[proc]} of each complete line, one colour per topic.
    """

    def __init__(self) -> None:
        self._partial = b""

    def paint(self, chunk: bytes) -> bytes:
        """
        The complete lines of what arrived so far, coloured; a partial last
        line waits for the rest.
        """
        data = self._partial + chunk
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        return b"".join(self._line(line) for line in data[:end].splitlines(keepends=True))

    @staticmethod
    def _line(line: bytes) -> bytes:
        """
        C{<ts> <app>[<proc>] <host>: <log>} with C{app[proc]} coloured.
        """
        start = line.find(b" ") + 1
        end = line.find(b"] ", start) + 1
        if start == 0 or end == 0:
            return line
        topic = line[start:end]
        if topic == b"logio[logio]":
            code = _NOTICE
        else:
            code = _PALETTE[zlib.crc32(topic) % len(_PALETTE)]
        return line[:start] + b"\x1b[" + code + b"m" + topic + b"\x1b[0m" + line[end:]


def _say(message: str) -> None:
    """
    One line on stderr.
    """
    print(message, file=sys.stderr, flush=True)
