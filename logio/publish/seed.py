"""
The seed JSON protocol of the original Go client: a topic object, then one
C{{"time": RFC 3339, "raw": text}} object per log call, back to back with
nothing (or any JSON whitespace) between them.

The stream cannot be split into lines, so this is an incremental JSON
decoder.  A fast path reads the exact shape the Go client writes with one
regular expression match per record; anything else goes through
C{JSONDecoder.raw_decode}.
"""

from __future__ import annotations

import codecs
import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol

from logio.interfaces import IBroker
from logio.net import peerHost
from logio.publish.base import Publisher, PublisherError, makeTopic, safeText
from logio.topic import Record, StampParser

_WHITESPACE = " \t\r\n"
#: What may be left at the end of a read when the stream stops inside a
#: literal, a number or a \\u escape.
_PARTIAL_TOKEN = re.compile(
    r"t(r(ue?)?)?|f(a(l(se?)?)?)?|n(u(ll?)?)?|N(aN?)?|-?(I(n(f(i(n(i(ty?)?)?)?)?)?)?)?"
    r"|\.|[eE][-+]?|u[0-9a-fA-F]{0,4}"
)
# The exact record shape the Go client writes, with its time (RFC 3339 with
# nanoseconds) split into the part up to the milliseconds and the zone, the
# digits after the milliseconds skipped: groups are (time to the
# millisecond, zone, raw).  Records of other shapes, with other time forms,
# or with an escaped quote in the raw text, take the general decoder.
_GO_RECORD = re.compile(
    r'\{"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,3})?)(?:(?<=\.\d{3})\d+)?'
    r'(Z|[+-]\d\d:\d\d)","raw":"([^"]*)"\}',
    re.ASCII,
)


def _truncated(buffer: str, error: json.JSONDecodeError) -> bool:
    """
    Whether a decode error only means the value is not complete yet: the
    read stopped inside a string, or inside a token that could still become
    valid.
    """
    if error.msg.startswith("Unterminated string"):
        return True
    return _PARTIAL_TOKEN.fullmatch(buffer, error.pos) is not None or error.pos == len(buffer)


def cleanText(raw: object) -> str:
    """
    The log text of a record: C{raw} as a string, without its trailing
    newline (and carriage return).
    """
    text = safeText(raw if isinstance(raw, str) else str(raw))
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    return text


class SeedProtocol(Publisher, Protocol):
    """
    Decode the seed JSON stream and publish one batch per read.

    @ivar badTimes: Records whose C{time} did not parse; they were stamped
        with the receive time instead.
    """

    protocolName = "seed"

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        maxLine: int,
        stamps: StampParser,
    ) -> None:
        super().__init__(broker, clock, maxLine)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        # strict=False: a control character inside a string is kept, not an
        # error, the same as on the fast path.
        self._json = json.JSONDecoder(strict=False)
        #: Shared by the publishers of one factory, so its bounded cache is
        #: the only one, however many publishers there are.
        self.stamps = stamps
        self._buffer = ""
        # Characters of the stream before the start of the buffer.
        self._offset = 0
        self.badTimes = 0

    def dataReceived(self, data: bytes) -> None:
        if self.failed:
            return
        text = self._decoder.decode(data)
        buffer = self._buffer + text
        if self._buffer.startswith("{") and "}" not in text:
            # The pending object cannot have ended: decoding it again on
            # every small read would be quadratic.
            self._buffer = buffer
            self._checkLength()
            return
        records: list[Record] = []
        try:
            position = self._parse(buffer, records)
        except PublisherError as e:
            self.publish(records, len(buffer))
            self._buffer = ""
            self.fail(str(e))
            return
        self.publish(records, position)
        self._buffer = buffer[position:]
        self._offset += position
        self._checkLength()

    def _checkLength(self) -> None:
        """
        Refuse an incomplete value that is already longer than C{maxLine}.
        """
        if len(self._buffer) > self.maxLine:
            self._buffer = ""
            self.fail(str(self._tooLong()))

    def _tooLong(self) -> PublisherError:
        return PublisherError(f"a JSON value is longer than {self.maxLine} characters")

    def _fastRecords(self, buffer: str, position: int, records: list[Record]) -> int:
        """
        Read records of the Go client's exact shape for as long as they come
        back to back.

        @return: Where the first value of any other shape (or an incomplete
            one) starts; the general decoder takes over from there.
        """
        match = _GO_RECORD.match
        cached = self.stamps.cached
        limit = self.maxLine
        while True:
            found = match(buffer, position)
            if found is None:
                return position
            end = found.end()
            if end - position > limit:
                return position
            when, zone, raw = found.groups()
            # Well-formed by the pattern, so the text itself is the key.
            time = when + zone
            stamp = cached(time) or self._stamp(time)
            escape = raw.find("\\")
            if escape < 0:
                # A raw newline at the end (a control character JSON
                # allows here, as strict=False does) goes, as on the slow path.
                text = raw if raw[-1:] != "\n" else cleanText(raw)
            elif escape == len(raw) - 2 and raw[-1] == "n":
                text = raw[:-2]
            else:
                try:
                    text = cleanText(scanstring(raw + '"', 0, False)[0])
                except json.JSONDecodeError:
                    # An escaped quote ended the match early: not this shape.
                    return position
            records.append((stamp, text))
            position = end

    def changes(self) -> str:
        if not self.badTimes:
            return ""
        return f"{self.badTimes} records had a time that did not parse and got the receive time"

    def _stamp(self, time: object) -> str:
        """
        The output timestamp of a record's C{time}: parsed, or the receive
        time if there is none or it does not parse (counted in C{badTimes}).
        """
        if isinstance(time, str):
            stamp = self.stamps(time)
            if stamp is not None:
                return stamp
        if time is not None:
            self.badTimes += 1
        return self.now()

    def _parse(self, buffer: str, records: list[Record]) -> int:
        """
        Decode every complete value in C{buffer}, appending records.

        @return: Where the first incomplete value starts.
        @raise PublisherError: On a value that can never decode.
        """
        position = 0
        end = len(buffer)
        maxLine = self.maxLine
        while True:
            while position < end and buffer[position] in _WHITESPACE:
                position += 1
            if position == end:
                return position
            if self.topic is not None:
                position = self._fastRecords(buffer, position, records)
                if position == end:
                    return position
                if buffer[position] in _WHITESPACE:
                    continue
            try:
                value, valueEnd = self._json.raw_decode(buffer, position)
            except json.JSONDecodeError as e:
                if _truncated(buffer, e):
                    return position
                raise PublisherError(
                    f"bad JSON at character {self._offset + e.pos}: {e.msg}"
                ) from None
            except (RecursionError, ValueError) as e:
                # Nesting too deep, or an integer too long to convert.
                raise PublisherError(
                    f"bad JSON at character {self._offset + position}: {e}"
                ) from None
            if valueEnd - position > maxLine:
                raise self._tooLong()
            if not isinstance(value, dict):
                raise PublisherError(f"expected a JSON object, got {type(value).__name__}")
            position = valueEnd
            if self.topic is None:
                self.setTopic(
                    makeTopic(
                        value.get("app"),
                        value.get("proc"),
                        value.get("host"),
                        peerHost(self.transport),
                    )
                )
                continue
            records.append((self._stamp(value.get("time")), cleanText(value.get("raw", ""))))
