# -*- test-case-name: tests.test_publish -*-
"""
The seed JSON protocol of the original Go client: a topic object, then one
C{{"time": RFC 3339, "raw": text}} object per log call, back to back with
nothing (or any JSON whitespace) between them.

The stream cannot be split into lines, so this is an incremental JSON
decoder.  A fast path reads the exact shape the Go client writes: the
compiled decoder (L{logio.ingest.speedups.goRecords}) where it is built, a
regular expression match per record otherwise; anything else goes through
C{JSONDecoder.raw_decode}, once a scanner that reads each character once
(and jumps between the ones that matter with a regular expression) has
found where the value ends: so the cost of a stream is linear in its
length however it is split into reads.

A record longer than C{maxLine} characters is cut there: what fits of its
C{raw} text is kept, marked like a cut text line, and the rest of the value
is skipped without being held.
"""

from __future__ import annotations

import codecs
import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol

from logio.auth import Tokens
from logio.ingest.base import (
    Publisher,
    PublisherError,
    cleanText,
    makeTopic,
    safeText,
)
from logio.ingest.lines import TRUNCATED
from logio.ingest.speedups import goRecords
from logio.interfaces import IBroker
from logio.net import peerHost
from logio.refusals import Refusals
from logio.topic import Record, StampParser

#: Refusal causes.
BAD_JSON = "invalid JSON"
NOT_AN_OBJECT = "not a JSON object"
TOO_LONG = "JSON value too long"
ENDED_INSIDE = "stream ended inside a JSON value"

_SPACE = re.compile(r"[ \t\r\n]*")
#: Outside strings, the characters that change the scanner's state.
_STRUCTURE = re.compile(r'["{}\[\]]')
#: The same, and the commas between members.
_MEMBER_STRUCTURE = re.compile(r'[",{}\[\]]')
#: Inside a string, everything up to its closing quote, or up to a
#: backslash that ends the read (whose escaped character comes next).
_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
#: A \\u escape cut short at the end of a string's body.
_PARTIAL_ESCAPE = re.compile(r"\\u[0-9a-fA-F]{0,3}\Z")
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


def _skipSpace(text: str, position: int) -> int:
    """
    Where the whitespace at C{position} in C{text} ends.
    """
    found = _SPACE.match(text, position)
    assert found is not None
    return found.end()


def _stringEnd(text: str, position: int) -> int:
    """
    Where the body of the string at C{position} in C{text} stops: at its
    closing quote, at a backslash that ends C{text}, or at its end.
    """
    found = _STRING_BODY.match(text, position)
    assert found is not None
    return found.end()


def _outline(text: str) -> tuple[int, int]:
    """
    Where, in C{text}, the start of an object cut short, the last comma
    between its members is (outside strings and nested values), and where
    the string that is open at the end of C{text} starts; -1 for none.
    """
    depth = 0
    position = 0
    comma = -1
    end = len(text)
    while True:
        found = _MEMBER_STRUCTURE.search(text, position)
        if found is None:
            return comma, -1
        position = found.end()
        char = text[position - 1]
        if char == '"':
            close = _stringEnd(text, position)
            if close == end or text[close] == "\\":
                return comma, position - 1
            position = close + 1
        elif char == ",":
            if depth == 1:
                comma = position - 1
        elif char == "{" or char == "[":
            depth += 1
        else:
            depth -= 1


def _wholeEscapes(body: str) -> str:
    """
    The body of a string cut short, without the part of an escape the cut
    separated from the rest of it.
    """
    body = body[: _stringEnd(body, 0)]
    partial = _PARTIAL_ESCAPE.search(body)
    if partial is not None:
        before = body[: partial.start()]
        if (len(before) - len(before.rstrip("\\"))) % 2 == 0:
            body = before
    return body


def _badJSON(position: int, reason: object) -> PublisherError:
    return PublisherError(f"bad JSON at character {position}: {reason}", BAD_JSON)


def _notAnObject(value: object) -> PublisherError:
    return PublisherError(f"expected a JSON object, got {type(value).__name__}", NOT_AN_OBJECT)


class SeedProtocol(Publisher, Protocol):
    """
    Decode the seed JSON stream and publish one batch per read.

    A value that does not end in the read it starts in is held as a list of
    the reads' texts, with the scanner's state at the end of the last one
    (nesting depth, inside a string, after a backslash), so each read is
    scanned once and the value decoded once.

    @ivar badTimes: Records whose C{time} did not parse; they were stamped
        with the receive time instead.
    @ivar cutRecords: Records longer than C{maxLine} that were cut.
    @ivar cutCharacters: The characters skipped after those cuts.
    """

    protocolName = "seed"
    #: The compiled decoder of the Go client's records
    #: (L{logio.ingest.speedups.goRecords}), or L{None} for the Python loop
    #: alone.
    compiled = goRecords

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        maxLine: int,
        refusals: Refusals,
        stamps: StampParser,
        tokens: Optional[Tokens] = None,
    ) -> None:
        super().__init__(broker, clock, maxLine, refusals, tokens)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        # strict=False: a control character inside a string is kept, not an
        # error, the same as on the fast path.
        self._json = json.JSONDecoder(strict=False)
        # The members of a cut record, in order, duplicates and all.
        self._pairs = json.JSONDecoder(strict=False, object_pairs_hook=list)
        #: Shared by the publishers of one factory, so its bounded cache is
        #: the only one, however many publishers there are.
        self.stamps = stamps
        # Characters of the stream before the current read.
        self._offset = 0
        # The incomplete value: its reads so far (None if there is none),
        # their length, and where in the stream it starts.
        self._pending: list[str] | None = None
        self._pendingLength = 0
        self._valueStart = 0
        # Skipping the rest of a cut record.
        self._skipping = False
        # The scanner's state at the end of the last read.
        self._depth = 0
        self._inString = False
        self._escaped = False
        # A token that may still become a JSON literal or number (always a
        # refusal, but one that names the value): a few characters at most.
        self._carry = ""
        self.badTimes = 0
        self.cutRecords = 0
        self.cutCharacters = 0

    def dataReceived(self, data: bytes) -> None:
        if self.failed or self.stopped:
            return
        decoder = self._decoder
        try:
            # Most reads end between characters: decoded at once, unless
            # the last read left part of one, or this one does.
            text = decoder.decode(data) if decoder.buffer else data.decode()
        except UnicodeDecodeError:
            text = decoder.decode(data)
        if self._carry:
            self._offset -= len(self._carry)
            text, self._carry = self._carry + text, ""
        records: list[Record] = []
        start = 0
        compiled = self.compiled
        if (
            compiled is not None
            and self._pending is None
            and not self._skipping
            and self.topic is not None
        ):
            # The Go client's records, back to back: the compiled decoder
            # takes them at once, and the rest of the loop what it leaves
            # (the start of a record the next read ends, or anything else).
            start = compiled(text, 0, self.maxLine, self.stamps.cache, self._stamp, records)
            if start == len(text):
                self._offset += start
                self.publish(records, start)
                return
        skipped = self.cutCharacters
        try:
            consumed = self._feed(text, records, start)
        except PublisherError as e:
            self.publish(records, len(text))
            self._pending = None
            self.fail(str(e), e.cause)
            return
        self._offset += len(text)
        self.publish(records, consumed - (self.cutCharacters - skipped))

    def _feed(self, text: str, records: list[Record], start: int = 0) -> int:
        """
        Take one read: finish (or go on with) the pending value, then decode
        the values that follow.

        @param start: Where in C{text} to begin, the values before it taken
            already (none is pending then).
        @return: How many characters of the stream the values completed in
            this read took, those before C{start} included.
        """
        position = consumed = start
        if self._pending is not None or self._skipping:
            end = self._scan(text, 0)
            if end < 0:
                if self._skipping:
                    self.cutCharacters += len(text)
                    return 0
                assert self._pending is not None
                self._pending.append(text)
                self._pendingLength += len(text)
                if self._pendingLength > self.maxLine:
                    self._cutPending(records)
                return 0
            if self._skipping:
                self._skipping = False
                self.cutCharacters += end
            else:
                assert self._pending is not None
                self._pending.append(text[:end])
                value = "".join(self._pending)
                self._pending = None
                self._complete(value, 0, len(value), self._valueStart, records)
                consumed = len(value)
            position = end
        return consumed + self._parse(text, position, records)

    def _scan(self, text: str, position: int) -> int:
        """
        Scan C{text} from C{position} for the end of the object being read,
        from the state the last read left.

        @return: Where the object ends (just after its closing brace), the
            state reset for the next one; or -1 if it does not end in
            C{text}, the state kept.
        """
        depth, inString, escaped = self._depth, self._inString, self._escaped
        end = len(text)
        structure = _STRUCTURE.search
        while position < end:
            if inString:
                if escaped:
                    escaped = False
                    position += 1
                    continue
                position = _stringEnd(text, position)
                if position == end:
                    break
                if text[position] == "\\":
                    # The last character: what it escapes comes next read.
                    escaped = True
                    break
                inString = False
                position += 1
                continue
            found = structure(text, position)
            if found is None:
                break
            position = found.end()
            char = text[position - 1]
            if char == '"':
                inString = True
            elif char == "{" or char == "[":
                depth += 1
            else:
                depth -= 1
                if depth <= 0:
                    self._depth, self._inString, self._escaped = 0, False, False
                    return position
        self._depth, self._inString, self._escaped = depth, inString, escaped
        return -1

    def _parse(self, text: str, position: int, records: list[Record]) -> int:
        """
        Decode every value that starts and ends in C{text} from
        C{position}, appending records; a value that does not end in it
        becomes the pending one.

        @return: How many characters the complete values took.
        @raise PublisherError: On a value that can never decode.
        """
        end = len(text)
        start = position
        while True:
            position = _skipSpace(text, position)
            if position == end:
                return position - start
            if self.topic is not None:
                position = self._fastRecords(text, position, records)
                position = _skipSpace(text, position)
                if position == end:
                    return position - start
            char = text[position]
            if char == "{":
                valueEnd = self._scan(text, position)
                if valueEnd < 0:
                    self._startPending(text, position, records)
                    return position - start
                self._complete(text, position, valueEnd, self._offset, records)
                position = valueEnd
            elif char == "[":
                raise _notAnObject([])
            elif char == '"':
                raise _notAnObject("")
            else:
                self._scalar(text, position)
                self._carry = text[position:]
                return position - start

    def _scalar(self, text: str, position: int) -> None:
        """
        A value that is not an object, array or string starts at
        C{position}: refuse it, unless it ends the read and may still
        become a literal or a number (the caller keeps it for the next).

        @raise PublisherError: Always, except in that case.
        """
        try:
            value, _ = self._json.raw_decode(text, position)
        except json.JSONDecodeError as e:
            if _truncated(text, e):
                return
            raise _badJSON(self._offset + e.pos, e.msg) from None
        except ValueError as e:
            # An integer too long to convert.
            raise _badJSON(self._offset + position, e) from None
        raise _notAnObject(value)

    def _startPending(self, text: str, position: int, records: list[Record]) -> None:
        """
        Keep the object that starts at C{position} and does not end in
        C{text} for the next reads.  What it holds so far is checked once,
        so a value that can never decode is refused now rather than when it
        ends.
        """
        part = text[position:]
        self._pending = [part]
        self._pendingLength = len(part)
        self._valueStart = self._offset + position
        if len(part) > self.maxLine:
            self._cutPending(records)
            return
        try:
            self._json.raw_decode(part)
        except json.JSONDecodeError as e:
            if not _truncated(part, e):
                raise _badJSON(self._valueStart + e.pos, e.msg) from None
        except (RecursionError, ValueError) as e:
            raise _badJSON(self._valueStart, e) from None

    def _complete(
        self, text: str, position: int, end: int, origin: int, records: list[Record]
    ) -> None:
        """
        Decode the complete object C{text[position:end]}: the topic, or a
        record (cut if it is longer than C{maxLine}).

        @param origin: Where C{text} starts in the stream.
        """
        if end - position > self.maxLine:
            records.append(self._cut(text[position : position + self.maxLine], origin + position))
            self.cutCharacters += end - position - self.maxLine
            return
        try:
            value, _ = self._json.raw_decode(text, position)
        except json.JSONDecodeError as e:
            raise _badJSON(origin + e.pos, e.msg) from None
        except (RecursionError, ValueError) as e:
            # Nesting too deep, or an integer too long to convert.
            raise _badJSON(origin + position, e) from None
        if not isinstance(value, dict):
            raise _notAnObject(value)
        if self.topic is None:
            self.setTopic(
                makeTopic(
                    value.get("app"), value.get("proc"), value.get("host"), peerHost(self.transport)
                ),
                value.get("token"),
            )
            return
        records.append((self._stamp(value.get("time")), cleanText(value.get("raw", "")), None))

    def _cutPending(self, records: list[Record]) -> None:
        """
        The pending object has grown past C{maxLine}: cut it there and skip
        the rest of it as it arrives.
        """
        assert self._pending is not None
        value = "".join(self._pending)
        self._pending = None
        records.append(self._cut(value[: self.maxLine], self._valueStart))
        self.cutCharacters += len(value) - self.maxLine
        self._skipping = True

    def _tooLong(self) -> PublisherError:
        return PublisherError(f"a JSON value is longer than {self.maxLine} characters", TOO_LONG)

    def _cut(self, prefix: str, origin: int) -> Record:
        """
        The record an object longer than C{maxLine} is cut to, from its
        first C{maxLine} characters: its C{raw} text up to the cut, marked
        with L{TRUNCATED} (or whole, if it ended before the cut), and its
        time if that came before the cut.

        @param origin: Where C{prefix} starts in the stream.
        @raise PublisherError: If the object is the topic, if C{raw} does
            not start before the cut, or if C{prefix} is not valid JSON.
        """
        if self.topic is None:
            raise self._tooLong()
        comma, open = _outline(prefix)
        if open >= 0:
            # Close the string the cut fell in.
            prefix = prefix[:open] + '"' + _wholeEscapes(prefix[open + 1 :]) + '"'
        self._checkCut(prefix, origin)
        if open >= 0:
            closed = prefix + "}"
            pairs = self._members(closed, self._pairs)
            if pairs and pairs[-1][0] == "raw":
                # The cut fell inside the raw text.
                self.cutRecords += 1
                time = self._members(closed, self._json).get("time")
                return (self._stamp(time), safeText(pairs[-1][1]) + TRUNCATED, None)
        # The cut fell elsewhere: keep the members before it, if raw is one.
        members = self._members(prefix[:comma] + "}", self._json) if comma > 0 else None
        if not members or "raw" not in members:
            raise self._tooLong()
        self.cutRecords += 1
        return (self._stamp(members.get("time")), cleanText(members["raw"]), None)

    def _checkCut(self, prefix: str, origin: int) -> None:
        """
        Check that C{prefix}, the start of an object, is valid JSON cut
        short.

        @raise PublisherError: If it is not.
        """
        try:
            self._json.raw_decode(prefix)
        except json.JSONDecodeError as e:
            if not _truncated(prefix, e):
                raise _badJSON(origin + e.pos, e.msg) from None
            return
        except (RecursionError, ValueError) as e:
            raise _badJSON(origin, e) from None
        raise self._tooLong()

    def _members(self, text: str, decoder: json.JSONDecoder) -> Any:
        """
        C{text} decoded, or L{None} if it is not one JSON object.
        """
        try:
            value = decoder.raw_decode(text)[0]
        except (json.JSONDecodeError, RecursionError, ValueError):
            return None
        return value if isinstance(value, (dict, list)) else None

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
        compiled = self.compiled
        while True:
            if compiled is not None:
                # It takes what it can, and leaves the rest of this loop
                # the record it stopped at.
                position = compiled(
                    buffer, position, limit, self.stamps.cache, self._stamp, records
                )
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
                # As the general path would: the newline, and a carriage
                # return before it, go.
                text = raw[:-3] if raw[-3:-2] == "\r" else raw[:-2]
            else:
                try:
                    text = cleanText(scanstring(raw + '"', 0, False)[0])
                except json.JSONDecodeError:
                    # An escaped quote ended the match early: not this shape.
                    return position
            records.append((stamp, text, None))
            position = end

    def changes(self) -> str:
        changes = []
        if self.badTimes:
            changes.append(
                f"{self.badTimes} records had a time that did not parse and got the receive time"
            )
        if self.cutRecords:
            changes.append(
                f"{self.cutRecords} records longer than {self.maxLine} characters were cut, "
                f"{self.cutCharacters} characters cut off"
            )
        return "; ".join(changes)

    def endOfStream(self) -> PublisherError | None:
        """
        Say what is wrong with a stream that ended inside a value: the error
        in what it held, or that it ended there.
        """
        if self._pending is not None:
            value = "".join(self._pending)
            self._pending = None
            try:
                self._json.raw_decode(value)
            except json.JSONDecodeError as e:
                if not _truncated(value, e):
                    return _badJSON(self._valueStart + e.pos, e.msg)
            except (RecursionError, ValueError) as e:
                return _badJSON(self._valueStart, e)
        elif not (self._skipping or self._carry):
            return None
        return PublisherError(
            f"the stream ended inside a JSON value (at character {self._offset})", ENDED_INSIDE
        )

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
