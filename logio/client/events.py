# -*- test-case-name: tests.test_client_tail -*-
"""
What C{logio tail} prints: the server's event stream (C{format=sse}, whose
ids let a reconnection resume where it left off) read event by event, and
each event shown as the server's other formats would show it:

  - with C{--json}, the event's data, which is byte for byte the line that
    C{format=json} sends (records and notices alike);
  - else the line, or lines, that C{format=text} sends:
    C{<ts> <app>[<proc>] <host>: <log>} for each physical line of a record,
    its text escaped by L{logio.fields.escape} (or, when colours are kept,
    L{logio.fields.escapeKeepingSGR}), and C{<ts> logio[logio] <host>:
    <message>} for a notice.
"""

from __future__ import annotations

import json
import zlib
from typing import Callable, NamedTuple, Optional

from logio.fields import RESERVED_APP, escape, escapeKeepingSGR

# Colours for app[proc]: green, yellow, blue, magenta, cyan and their bright
# variants; the server's own notices are bold red.
_PALETTE = ["32", "33", "34", "35", "36", "92", "93", "94", "95", "96"]
_NOTICE = "1;31"
_RESET = "\x1b[0m"
#: The topic of the server's notices, as the text output shows it.
_NOTICE_TOPIC = f"{RESERVED_APP}[{RESERVED_APP}]"


class Event(NamedTuple):
    """
    One server-sent event.
    """

    #: C{message} for a record, C{notice} or C{dropped} for a notice.
    kind: str
    #: The event's id (a record's C{<start>-<seq>}), or L{None}.
    id: Optional[str]
    #: The event's data: a JSON object, as UTF-8.
    data: bytes


class EventReader:
    """
    Split an event stream into events as its bytes arrive, as the SSE
    specification says: fields up to a blank line, comments (keep-alives)
    skipped, C{data} lines joined by newlines.
    """

    def __init__(self) -> None:
        self._partial = b""
        self._kind = b""
        self._id: Optional[bytes] = None
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Event]:
        """
        The events that C{chunk} completes; an incomplete one waits for
        the rest.
        """
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            line = line.removesuffix(b"\r")
            if not line:
                if self._data:
                    kind = self._kind.decode("utf-8", "replace") or "message"
                    eventId = None if self._id is None else self._id.decode("utf-8", "replace")
                    events.append(Event(kind, eventId, b"\n".join(self._data)))
                self._kind, self._id, self._data = b"", None, []
                continue
            name, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._kind = value
            elif name == b"id":
                self._id = value
        return events


def noticeMessage(event: Event) -> Optional[str]:
    """
    The message of a notice event, or L{None} for a record.
    """
    if event.kind == "message":
        return None
    try:
        message = json.loads(event.data).get("notice")
    except (ValueError, AttributeError):
        return None
    return message if isinstance(message, str) else None


class Printer:
    """
    Turn events into the bytes to print.

    @ivar host: The name notices show for the server (which its events do
        not carry): the host of the URL.
    """

    def __init__(self, json: bool, colour: bool, keepSGR: bool, host: str) -> None:
        self._json = json
        self._colour = colour
        self._shown: Callable[[str], str] = escapeKeepingSGR if keepSGR else escape
        self.host = host

    def show(self, event: Event) -> bytes:
        """
        What C{event} prints as.
        """
        if self._json:
            return event.data + b"\n"
        try:
            fields = json.loads(event.data)
            if "notice" in fields:
                return self._lines(
                    fields["time"], _NOTICE_TOPIC, self.host, fields["notice"], escape
                )
            topic = f"{fields['app']}[{fields['proc']}]"
            return self._lines(fields["time"], topic, fields["host"], fields["log"], self._shown)
        except (ValueError, TypeError, KeyError, AttributeError):
            # Not an event of a logio server: show it as it came, made safe.
            return escape(event.data.decode("utf-8", "replace")).encode("utf-8", "replace") + b"\n"

    def _lines(
        self, time: str, topic: str, host: str, text: str, shown: Callable[[str], str]
    ) -> bytes:
        """
        C{<ts> <topic> <host>: <line>} for each physical line of C{text},
        shown by C{shown}; the topic coloured if colours are on.
        """
        if self._colour:
            code = _NOTICE if topic == _NOTICE_TOPIC else _PALETTE[_hue(topic)]
            topic = f"\x1b[{code}m{topic}{_RESET}"
        head = f"{time.removesuffix('Z')} {topic} {host}: "
        return "".join([f"{head}{line}\n" for line in shown(str(text)).split("\n")]).encode(
            "utf-8", "replace"
        )


def _hue(topic: str) -> int:
    """
    The place in the palette of C{topic}'s colour: the same on every run.
    """
    return zlib.crc32(topic.encode("utf-8", "replace")) % len(_PALETTE)
