# -*- test-case-name: tests.test_fields -*-
"""
What a topic field may hold, and what the text output never shows raw:
one home for both, shared by the server and the client (so this module
needs nothing but the standard library).

A text output line is C{<ts> <app>[<proc>] <host>: <log>}.  So that every
line parses back to the same three fields, and no line can move a
terminal's cursor or pass for another line:

  - topic fields hold no whitespace, no C{[} or C{]} and none of the
    L{UNSAFE} characters, and the app L{RESERVED_APP} is the server's own;
  - in the text output the L{UNSAFE} characters of a log text are shown as
    visible escapes (C{\\u001b}), see L{escape}.
"""

from __future__ import annotations

import re
from typing import Optional

#: The longest topic field accepted: the topic is repeated on every line.
MAX_TOPIC_FIELD = 256

#: The app of the server's own notices, which no publisher may use.
RESERVED_APP = "logio"

_UNSAFE_CLASS = (
    # C0 controls but tab and newline, DEL and C1 controls,
    "\x00-\x08\x0b-\x1f\x7f-\x9f"
    # the Arabic letter mark, left-to-right and right-to-left marks,
    "\u061c\u200e\u200f"
    # the line and paragraph separators, bidi embeddings and overrides,
    "\u2028-\u202e"
    # and bidi isolates.
    "\u2066-\u2069"
)

#: What the text output shows escaped: characters that move a terminal's
#: cursor, end a line for some readers, or reorder the text around them.
UNSAFE = re.compile(f"[{_UNSAFE_CLASS}]")

_NOT_IN_FIELD = re.compile(rf"[\s\[\]{_UNSAFE_CLASS}]")

#: The UTF-8 bytes that may start an L{UNSAFE} character: the controls
#: themselves, and the lead bytes of the others.  Text without any of them
#: needs no escape.
SUSPECT = bytes(range(0x00, 0x09)) + bytes(range(0x0B, 0x20)) + b"\x7f\xc2\xd8\xe2"
#: Every byte that is not L{SUSPECT}: what C{data.translate(None, CLEAN)}
#: deletes, leaving the suspects.
CLEAN = bytes(sorted(set(range(256)) - set(SUSPECT)))
#: L{CLEAN} less the newline: C{data.translate(None, CLEAN_BUT_NEWLINE)}
#: leaves the suspects and the newlines, which one pass then counts.
CLEAN_BUT_NEWLINE = CLEAN.replace(b"\n", b"")


def _visible(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape(text: str) -> str:
    """
    C{text} with every L{UNSAFE} character shown as C{\\uXXXX}.
    """
    return UNSAFE.sub(_visible, text)


#: An SGR sequence (colour, bold, reset...): C{ESC [ <numbers> m}, the only
#: escape sequence shown raw when a subscriber asks for colours.  Its
#: parameters are bounded so that no sequence is unbounded work for a
#: terminal.
SGR = re.compile(r"\x1b\[[0-9;:]{0,64}m")
_SGR_OR_UNSAFE = re.compile(rf"({SGR.pattern})|[{_UNSAFE_CLASS}]")
#: What ends a line that kept SGR sequences, so that its colours stop there.
SGR_RESET = "\x1b[0m"


def _visibleUnlessSGR(match: re.Match[str]) -> str:
    return match.group() if match.group(1) else f"\\u{ord(match.group()):04x}"


def escapeKeepingSGR(text: str) -> str:
    """
    C{text} as L{escape} shows it, but with its L{SGR} sequences kept raw,
    and a reset at the end of every line that has any: colours, bold and
    underline reach a terminal, nothing that moves its cursor does, and no
    colour runs on into the next line.
    """
    if SGR.search(text) is None:
        return escape(text)
    return "\n".join(
        _SGR_OR_UNSAFE.sub(_visibleUnlessSGR, line) + (SGR_RESET if SGR.search(line) else "")
        for line in text.split("\n")
    )


def _named(char: str) -> str:
    if char == " ":
        return "a space"
    if char in "[]":
        return repr(char)
    return f"the character U+{ord(char):04X}"


def fieldProblem(name: str, value: str) -> Optional[str]:
    """
    What is wrong with C{value} as the topic field C{name}, or L{None}.
    """
    if len(value) > MAX_TOPIC_FIELD:
        return f"topic field {name!r} is longer than {MAX_TOPIC_FIELD} characters"
    found = _NOT_IN_FIELD.search(value)
    if found is not None:
        return (
            f"topic field {name!r} holds {_named(found.group())}: topic fields hold "
            "no whitespace, brackets or control characters"
        )
    if name == "app" and value == RESERVED_APP:
        return f"the app {RESERVED_APP!r} is the server's own"
    return None


def acceptable(value: str) -> str:
    """
    C{value} made into a valid topic field: what a field may not hold
    becomes C{_}, and it is cut to L{MAX_TOPIC_FIELD} characters.  For
    defaults (a host name, a program name), which are nobody's mistake.
    """
    return _NOT_IN_FIELD.sub("_", value)[:MAX_TOPIC_FIELD]
