# -*- test-case-name: tests.test_client_cli -*-
"""
The C{logio} command.

    logio pub URL       publish standard input, line by line
    logio tail [URL]    print a subscription's lines as they come

This module reads the command line; L{logio.client.pub} and
L{logio.client.tail} do the work.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from logio import version
from logio.client.pub import publishLines
from logio.client.publisher import RECORD_OVERHEAD
from logio.client.tail import RECONNECT_MAX, OutputClosed, subscriptionURL, tail
from logio.ports import SUBSCRIBE_PORT

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
come, one line each (a multi-line record gives several), as the server's text
output shows them: <time> <app>[<proc>] <host>: <log>, the characters that
could move a terminal's cursor shown escaped (\\u001b); with --json, as its
JSON lines. The subscription is the URL's query plus the flags below: a flag
replaces the URL's parameter of the same name, and the rest of the query is
sent as given. The filters are regular expressions (RE2) searched anywhere in
their field; a missing or empty one matches everything.

URL is http://HOST[:PORT]/?QUERY (port 80) or https://... (port 443, verified
with the system's CAs or with --ca). A bare HOST or HOST:PORT means
http://HOST:{SUBSCRIBE_PORT}/ or that port; without a URL, http://localhost:{SUBSCRIBE_PORT}/.
logio tail reads the server's event stream (format=sse, whose ids say where
to resume): the URL's format=text or format=json says what to print (--json
is format=json), another format is an error; its last_event_id=ID resumes
after that record. On a terminal (or with --color always) the records' own
colours (SGR sequences) are kept; the URL's ansi=keep or ansi=escape decides
instead.

When the server stops (it says so: "the server is shutting down"), goes away or
ends the stream, logio tail says so on stderr, reconnects at once and then
every {RECONNECT_MAX:g} s at most, says when it is connected again, and resumes after the
last record it printed: no record is printed twice, and none is missed that
the server's history still holds (a restarted server holds those of its new
run; it sends a notice when some are gone). Until a record is printed there is
nothing to resume after: a reconnection then prints what comes after it. The
server's notices print as <time> logio[logio] <URL's host>: <message>.
Ctrl-C ends it (status 130). A refusal (4xx, e.g. a bad pattern) or a
certificate that fails verification ends it with status 1, a bad command line
with status 2.
"""

_EXAMPLES_TAIL = f"""\
examples:
  logio tail --app myapp --log '\\d+ms' -n 100
      on localhost:{SUBSCRIBE_PORT}, the last 100 records of app myapp whose text
      holds a number followed by "ms", then those to come
  logio tail --no-follow --json -n 1000 'https://logs.example.com/?app=myapp&proc=web|worker'
      the last 1000 records of procs web and worker of myapp, as JSON; then exit
"""


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
            return publishLines(args.url, args.timeout, args.max_lines, max_bytes, sys.stdin.buffer)
        return tail(subscriptionURL(args), args.color, args.ca, args.token, sys.stdout)
    except ValueError as e:
        print(f"logio {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OutputClosed:
        # As in "logio tail URL | head": end quietly. Python flushes stdout
        # again at exit, so point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def parseArguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    The C{logio} command line, parsed; a wrong one exits with status 2.
    """
    parser = _Parser(prog="logio", description="Publish to and subscribe to a logio server.")
    parser.add_argument("--version", action="version", version=f"logio {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _addPub(commands)
    _addTail(commands)
    return parser.parse_args(argv)


def _addPub(commands: Any) -> None:
    """
    Add C{logio pub} and its options to C{commands}.
    """
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


def _addTail(commands: Any) -> None:
    """
    Add C{logio tail} and its options to C{commands}.
    """
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
        f"(default http://localhost:{SUBSCRIBE_PORT}/)",
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
        "--level",
        metavar="LEVEL",
        help="only records at LEVEL or above (level=LEVEL): trace, debug, info, notice, "
        "warn, error or fatal",
    )
    tail.add_argument(
        "--since",
        metavar="WHEN",
        help="first print the matching records of the server's history from WHEN on "
        "(since=WHEN): an RFC 3339 time (2026-12-05T02:00:00Z) or a span before now "
        "(90s, 15m, 2h, 7d)",
    )
    tail.add_argument(
        "--until",
        metavar="WHEN",
        help="only records up to WHEN (until=WHEN), in the same forms as --since; the "
        "output ends when that time has passed",
    )
    tail.add_argument(
        "-n",
        "--tail",
        type=_whole,
        metavar="N",
        help="first print the last N matching records of the server's history (tail=N): "
        "on the first connection only, never on a reconnection (which resumes after the "
        "last record printed); 0 for none",
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
        '"log": ...}; a notice from the server is {"time": ..., "notice": ...}',
    )


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


if __name__ == "__main__":
    sys.exit(main())
