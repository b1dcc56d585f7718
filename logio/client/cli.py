"""
The C{logio} command.

    logio pub URL       publish standard input, line by line
    logio tail [URL]    print a subscription's lines as they come

C{pub} uses the same queue, reconnection and exit flush as L{LogioHandler}.
C{tail} speaks plain HTTP (no Twisted), reconnects with backoff when the server
goes away, and colours each topic's C{app[proc]} when printing to a terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import os
import random
import re
import signal
import socket
import ssl
import string
import sys
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import BinaryIO, NamedTuple, NoReturn, TextIO
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit

from logio import version
from logio.client.publisher import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    RECORD_OVERHEAD,
    Publisher,
    truncate,
)
from logio.client.url import parse_url
from logio.ports import SUBSCRIBE_PORT

#: The subscriber port of a logio server.
DEFAULT_SUBSCRIBE_PORT = SUBSCRIBE_PORT

#: logio pub's byte bound by default: so much per line of --max-lines, so
#: that lines of usual length are bounded by their count, not their bytes...
_PUB_BYTES_PER_LINE = 1024
#: ...but never below the handler's default,
_PUB_MIN_DEFAULT_BYTES = 1024 * 1024
#: and never below what the longest line needs.
_PUB_MIN_BYTES = 64 * 1024
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

_EXAMPLES_PUB = """\
example:
  myapp 2>&1 | logio pub 'logio://logs.example.com:7701?app=myapp&proc=web'

URL: logio://HOST[:PORT]?app=APP[&proc=PROC][&host=HOST] (port 7701), logios://...
for TLS (add &ca=/path/ca.pem to trust a private CA), or logio+unix:///path?app=APP.
"""

_DESCRIPTION_TAIL = f"""\
Subscribe to a logio server over HTTP and print the matching records as they
come, one line each (a multi-line record gives several). The subscription is
the URL's query plus the flags below: a flag replaces the URL's parameter of the
same name, and the rest of the query is sent as given. The filters are regular
expressions (RE2) searched anywhere in their field; a missing or empty one
matches everything.

URL is http://HOST[:PORT]/?QUERY (port 80) or https://... (port 443, verified
with the system's CAs or with --ca). A bare HOST or HOST:PORT means
http://HOST:{DEFAULT_SUBSCRIBE_PORT}/ or that port; without a URL, http://localhost:{DEFAULT_SUBSCRIBE_PORT}/.

When the server goes away or ends the stream, it says so on stderr and
reconnects with backoff ({BACKOFF_MIN:g} s, doubling up to {BACKOFF_MAX:g} s). Only the first
connection replays history: a reconnection sends no tail=, so no record is
printed twice (those published while it was away are missed). Ctrl-C ends it
(status 130). A refusal (4xx, e.g. a bad pattern) or a certificate that fails
verification ends it with status 1, a bad command line with status 2.
"""

_EXAMPLES_TAIL = f"""\
examples:
  logio tail --app myapp --log '\\d+ms' -n 100
      on localhost:{DEFAULT_SUBSCRIBE_PORT}, the last 100 records of app myapp whose text
      holds a number followed by "ms", then those to come
  logio tail --no-follow --json -n 1000 'https://logs.example.com/?app=myapp&proc=web|worker'
      the last 1000 records of procs web and worker of myapp, as JSON; then exit
"""

# Colours for app[proc]: green, yellow, blue, magenta, cyan and their bright
# variants; the server's own notices are bold red.
_PALETTE = [b"32", b"33", b"34", b"35", b"36", b"92", b"93", b"94", b"95", b"96"]
_NOTICE = b"1;31"


class _Parser(argparse.ArgumentParser):
    """
    An argument parser whose errors are one line and exit status 2.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the C{logio} command; returns the exit status.
    """
    args = parseArguments(argv)
    try:
        if args.command == "pub":
            max_bytes = args.max_bytes or max(
                args.max_lines * _PUB_BYTES_PER_LINE, _PUB_MIN_DEFAULT_BYTES
            )
            return _pub(args.url, args.timeout, args.max_lines, max_bytes, sys.stdin.buffer)
        return _tail(subscriptionURL(args), args.color, args.ca, args.token, sys.stdout)
    except ValueError as e:
        print(f"logio {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except _OutputClosed:
        # As in "logio tail URL | head": end quietly. Python flushes stdout
        # again at exit, so point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


#: The proc of the lines of C{logio pub} when its URL names none.
PUB_PROC = "stdin"


def parseArguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    The C{logio} command line, parsed; a wrong one exits with status 2.
    """
    parser = _Parser(prog="logio", description="Publish to and subscribe to a logio server.")
    parser.add_argument("--version", action="version", version=f"logio {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pub = commands.add_parser(
        "pub",
        help="publish standard input, one record per line",
        description="Publish standard input to a logio server, one record per line.\n"
        "While the server takes them, lines are read only as fast as they are\n"
        "sent: a fast writer waits rather than losing lines. While the server\n"
        "cannot be reached, the newest lines are kept up to --max-lines and\n"
        "--max-bytes; past either bound the oldest are dropped, and the server is\n"
        "told how many once it is back. A line longer than 60 KiB is cut.\n"
        "Returns when standard input ends and the lines are sent, or when the\n"
        "timeout passes: then it says how many were not sent and exits with 1\n"
        "(as it does when lines were dropped).",
        epilog=_EXAMPLES_PUB,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pub.add_argument("url", metavar="URL", help="where to publish, and the topic")
    pub.add_argument(
        "--timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait at the end for lines still queued (default 5)",
    )
    pub.add_argument(
        "--max-lines",
        type=_count,
        default=10000,
        metavar="N",
        help="the most lines kept while the server is away (default 10000)",
    )
    pub.add_argument(
        "--max-bytes",
        type=_size,
        metavar="SIZE",
        help="the most bytes kept while the server is away, each line counting its "
        f"length plus {RECORD_OVERHEAD}; a number, or one ending in K, M or G; at least "
        f"{_PUB_MIN_BYTES // 1024}K "
        f"(default {_PUB_BYTES_PER_LINE // 1024}K per --max-lines line, at least "
        f"{_PUB_MIN_DEFAULT_BYTES >> 20}M)",
    )
    tail = commands.add_parser(
        "tail",
        help="print the lines of a subscription as they come",
        description=_DESCRIPTION_TAIL,
        epilog=_EXAMPLES_TAIL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="the server, and a query to subscribe with "
        f"(default http://localhost:{DEFAULT_SUBSCRIBE_PORT}/)",
    )
    tail.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="colour app[proc] per topic: auto means when printing to a terminal "
        "(never with --json)",
    )
    tail.add_argument("--ca", metavar="FILE", help="trust the CAs in this PEM file (https)")
    tail.add_argument(
        "--token",
        metavar="TOKEN",
        default=os.environ.get("LOGIO_TOKEN") or None,
        help="present this token (Authorization: Bearer) to a server started with --auth "
        "(default: $LOGIO_TOKEN)",
    )
    for name, field in [
        ("app", "app"),
        ("proc", "proc"),
        ("host", "publisher's host"),
        ("log", "log text"),
    ]:
        tail.add_argument(
            f"--{name}", metavar="RE", help=f"only records whose {field} matches RE ({name}=RE)"
        )
    tail.add_argument(
        "-n",
        "--tail",
        type=_whole,
        metavar="N",
        help="first print the last N matching records of the server's history (tail=N): "
        "on the first connection only, never on a reconnection; 0 for none",
    )
    tail.add_argument(
        "-f",
        "--follow",
        action=argparse.BooleanOptionalAction,
        help="-f: go on printing records as they come (the default); --no-follow "
        "(follow=0): print the history that -n asks for, then exit with 0 when the "
        "server ends the response; it never reconnects: a failure exits with 1",
    )
    tail.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per record and line (format=json), as the server "
        'sends it: {"seq": ..., "time": ..., "app": ..., "proc": ..., "host": ..., '
        '"log": ...}',
    )
    return parser.parse_args(argv)


def _seconds(text: str) -> float:
    """
    An argparse type: a positive number of seconds.
    """
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _count(text: str) -> int:
    """
    An argparse type: a positive whole number.
    """
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _whole(text: str) -> int:
    """
    An argparse type: a whole number, 0 or more.
    """
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def _size(text: str) -> int:
    """
    An argparse type: a number of bytes, at least 64K, optionally ending in
    K, M or G (powers of 1024).
    """
    scale = _UNITS.get(text[-1:].upper())
    number = text[:-1] if scale else text
    size = int(number) * (scale or 1) if number.isascii() and number.isdigit() else 0
    if size < _PUB_MIN_BYTES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size of at least {_PUB_MIN_BYTES // 1024}K (a line may take 60K)"
        )
    return size


# logio pub


def _pub(url: str, timeout: float, max_lines: int, max_bytes: int, stdin: BinaryIO) -> int:
    """
    Publish C{stdin} line by line, reading no faster than the lines are
    sent while the server is reachable; report what could not be sent.
    """
    target = parse_url(url)
    if not parse_qs(urlsplit(url).query).get("proc"):
        # Not "logio", the program's name: the lines came from its input.
        target = dataclasses.replace(target, proc=PUB_PROC)
    publisher = Publisher(target, max_records=max_lines, max_bytes=max_bytes, flush_timeout=timeout)
    interrupted = False
    with _patientInterrupts(stdin):
        try:
            for line in _lines(stdin, publisher.max_record_bytes):
                publisher.put(time.time(), line, wait=True)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            unsent = publisher.close(0.0 if interrupted else None)
    failed = interrupted
    if publisher.dropped_total:
        noun = "line" if publisher.dropped_total == 1 else "lines"
        print(
            f"logio pub: {publisher.dropped_total} {noun} dropped: the queue was full",
            file=sys.stderr,
        )
        failed = True
    if unsent:
        noun = "line was" if unsent == 1 else "lines were"
        print(
            f"logio pub: {unsent} {noun} not sent within {timeout:g} s "
            f"to {publisher.target.describe()}",
            file=sys.stderr,
        )
        failed = True
    return 130 if interrupted else 1 if failed else 0


@contextmanager
def _patientInterrupts(stdin: BinaryIO) -> Iterator[None]:
    """
    Ctrl-C in a terminal reaches every process of a pipeline: the app
    publishing through C{logio pub} then writes its last lines and ends.  So
    while stdin is a pipe, the first Ctrl-C is noted and reading goes on to
    the end of input; only a second one interrupts.
    """
    if stdin.isatty() or threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(number: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(
            "logio pub: interrupted; reading to the end of input (Ctrl-C again to stop now)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _lines(stream: BinaryIO, limit: int) -> Iterator[str]:
    """
    The lines of C{stream} as text ending in one newline, each at most
    C{limit} characters: the rest of a longer line is skipped.
    """
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        long = len(line) > limit and not line.endswith(b"\n")
        if long:
            # Skip to the end of this line without holding it in memory.
            while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                pass
        text = line.decode("utf-8", "replace").rstrip("\r\n") + "\n"
        yield truncate(text, limit) if long else text


# logio tail


class _Refused(Exception):
    """
    The server answered the subscription with a client error (4xx).
    """


class _OutputClosed(Exception):
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
    url = f"localhost:{DEFAULT_SUBSCRIBE_PORT}" if args.url is None else args.url
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
        port = DEFAULT_SUBSCRIBE_PORT if bare else 443 if parts.scheme == "https" else 80
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


def _tail(
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

    @raise _OutputClosed: the reader went away.
    """
    try:
        out.write(data)
        out.flush()
    except BrokenPipeError:
        raise _OutputClosed() from None


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


if __name__ == "__main__":
    sys.exit(main())
