# -*- test-case-name: tests.test_syslog -*-
"""
Syslog messages, RFC 5424, RFC 3164 (BSD) and the legacy forms around it,
read into records the same way whether they came over TCP or UDP (see
L{logio.ingest.syslognet}).

Every message has its own topic:

  - RFC 5424: app = APP-NAME, proc = PROCID, host = HOSTNAME, time =
    TIMESTAMP, log = MSG (a UTF-8 byte order mark removed);
  - RFC 3164: app = the TAG before C{[pid]:} or C{:}, proc = the pid, host =
    HOSTNAME, time = TIMESTAMP read as UTC in the server's current year (the
    year before, for a month more than one ahead of now), log = the rest;
  - the same with an RFC 3339 TIMESTAMP, as Go's C{log/syslog} sends it
    (C{<27>2026-12-05T00:16:01Z vm goapp[29330]: msg}) and rsyslog accepts;
  - header-less, the PRI then at once the tag and the text, as Python's
    C{logging.handlers.SysLogHandler} sends it (C{<11>myapp[28589]: text},
    or C{<11>text} with no tag): app and proc from the tag if there is one,
    the sender's address as host, the receive time.

A NILVALUE (C{-}) is an absent field: a missing app becomes C{syslog}, a
missing proc C{-}, a missing host the sender's address.  A character a
topic field may not hold becomes C{_} (L{logio.fields.acceptable}), and the
app C{logio} becomes C{_logio}: syslog fields are not the sender's choice
to fix.  A message without a valid PRI, or an RFC 5424 one (C{<PRI>1 })
that does not parse, is published whole as text under the app C{syslog}
with the receive time, and counted.  The severity of the PRI is the
record's level (L{logio.levels.fromSyslog}); the facility is not kept.

On a server with C{--auth} a message carries its token in RFC 5424
structured data: C{[logio@32473 token="TOKEN"]} (any SD-ID C{logio} or
C{logio@...}), as C{logger --sd-id logio@32473 --sd-param 'token="TOKEN"'}
sends it.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Callable, Optional

from twisted.internet.interfaces import IReactorTime

from logio.auth import Tokens
from logio.fields import RESERVED_APP, acceptable
from logio.ingest.base import MAX_TOPICS, Publications, PublisherError, checkAccess
from logio.ingest.speedups import octetFrames
from logio.interfaces import IBroker
from logio.levels import fromSyslog
from logio.topic import Record, StampParser, Topic

#: How a syslog message presents its token.
SD_TOKEN = 'send it in RFC 5424 structured data, [logio@32473 token="TOKEN"]'
#: The app of a message that names none, or that could not be parsed.
DEFAULT_APP = "syslog"
#: The longest octet count read: a count of more digits is not a count.
MAX_COUNT_DIGITS = 10

_BOM = b"\xef\xbb\xbf"
_LINE_ENDS = frozenset(b"\r\n")

# <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, then the
# structured data.
_RFC5424 = re.compile(rb"<\d{1,3}>1 (\S+) (\S+) (\S+) (\S+) \S+ ")
# Mmm dd hh:mm:ss: the RFC 3164 timestamp.
_BSD_STAMP = re.compile(rb"([A-Z][a-z]{2}) ([ \d]?\d) (\d\d):(\d\d):(\d\d) ")
# <PRI>TIMESTAMP, then the host name (or the tag, if there is none).
_RFC3164 = re.compile(rb"<\d{1,3}>" + _BSD_STAMP.pattern)
# An RFC 3339 timestamp in place of the RFC 3164 one (Go's log/syslog).
_RFC3339_STAMP = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)"
_LEGACY_RFC3339 = re.compile(rb"<\d{1,3}>(" + _RFC3339_STAMP + rb") ")
# A valid PRI (at most 191) followed by none of the headers: the header-less
# form (Python's SysLogHandler).  A broken RFC 5424 header is not read so.
HEADERLESS = re.compile(
    rb"<(?:\d\d?|0\d\d|1[0-8]\d|19[01])>(?!1 |"
    + _BSD_STAMP.pattern
    + rb"|"
    + _RFC3339_STAMP
    + rb" )"
)
_TAG = re.compile(rb"([^\s\[\]:]{1,64})(?:\[([^\]\s]{0,64})\])?:(?: |$)")
_MONTHS = {
    name.encode(): number
    for number, name in enumerate(
        "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1
    )
}
# An octet-counted RFC 5424 frame of the commonest shape, its count and
# header in one match: a timestamp with at most microseconds (grouped up to
# the milliseconds, and the zone), no structured data.
_FAST_OCTETS = re.compile(
    rb"(\d{1,10}) <(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,3})?)\d{0,3}"
    rb"(Z|[+-]\d\d:\d\d) (\S+) (\S+) (\S+) \S+ - "
)
_SD_ID = re.compile(rb"\[([^ \]]*)")
_PARAM = re.compile(rb'\s*([^\s="\]]+)="((?:[^"\\]|\\.)*)"', re.DOTALL)
_UNESCAPE = re.compile(rb'\\([\\"\]])')

#: What a message holds: app, proc, host (bytes, or None where absent),
#: its timestamp as it came (or None), its text, its token (or None),
#: whether it was well-formed, and its level (or None).
Parsed = tuple[
    Optional[bytes],
    Optional[bytes],
    Optional[bytes],
    Optional[bytes],
    bytes,
    Optional[str],
    bool,
    Optional[str],
]
#: Records gathered by topic, to publish in one go.
Batches = dict[Topic, list[Record]]


def _structuredData(frame: bytes, position: int) -> tuple[int, Optional[str]]:
    """
    Read the SD-ELEMENTs at C{position}; values may hold C{\\]}, C{\\"} and
    C{\\\\}.

    @return: Where they end, and the token of a C{logio} element if there
        is one; C{-1} as the end if they are malformed.
    """
    token = None
    length = len(frame)
    while position < length and frame[position] == 0x5B:  # [
        element = _SD_ID.match(frame, position)
        assert element is not None
        ident = element.group(1)
        position = element.end()
        while True:
            if position >= length:
                return -1, None
            if frame[position] == 0x5D:  # ]
                position += 1
                break
            match = _PARAM.match(frame, position)
            if match is None:
                return -1, None
            if match.group(1) == b"token" and (ident == b"logio" or ident.startswith(b"logio@")):
                token = _UNESCAPE.sub(rb"\1", match.group(2)).decode("utf-8", "replace")
            position = match.end()
    return position, token


def severity(frame: bytes) -> Optional[str]:
    """
    The level of the PRI a frame starts with, or L{None} if it has no valid
    one (at most 191: facility 23, severity 7).
    """
    end = frame.find(b">", 1, 5)
    if frame[:1] != b"<" or end < 2 or not frame[1:end].isdigit():
        return None
    pri = int(frame[1:end])
    return fromSyslog(pri & 7) if pri <= 191 else None


def parseMessage(frame: bytes) -> Parsed:
    """
    Read one syslog message: RFC 5424 if it is one, else RFC 3164 (with
    either timestamp), else header-less, else a malformed message whose
    whole text is the frame.
    """
    level = severity(frame)
    match = _RFC5424.match(frame)
    if match is not None:
        stamp, host, app, proc = match.groups()
        position = match.end()
        token = None
        if frame[position : position + 1] == b"-":
            position += 1
        else:
            position, token = _structuredData(frame, position)
        if position == len(frame) or (position > 0 and frame[position] == 0x20):
            text = frame[position + 1 :]
            if text.startswith(_BOM):
                text = text[len(_BOM) :]
            return (
                None if app == b"-" else app,
                None if proc == b"-" else proc,
                None if host == b"-" else host,
                None if stamp == b"-" else stamp,
                text,
                token,
                True,
                level,
            )
        return (None, None, None, None, frame, None, False, None)
    match = _RFC3164.match(frame)
    if match is not None:
        return _tagged(frame[match.end() :], frame[match.start(1) : match.end()], True, level)
    match = _LEGACY_RFC3339.match(frame)
    if match is not None:
        return _tagged(frame[match.end() :], match.group(1), True, level)
    match = HEADERLESS.match(frame)
    if match is not None:
        return _tagged(frame[match.end() :], None, False, level)
    return (None, None, None, None, frame, None, False, None)


def _tagged(rest: bytes, stamp: Optional[bytes], hosted: bool, level: Optional[str]) -> Parsed:
    """
    Read the rest of a message after its legacy timestamp (or after its PRI
    if it has none): the host name if C{hosted} and the first word is not
    the tag, then the tag, C{app[pid]:} or C{app:}, if there is one.
    """
    sender: Optional[bytes] = None
    if hosted:
        first, _, after = rest.partition(b" ")
        if not first.endswith(b":"):
            # The first word is not the tag: it is the host name.
            sender = first
            rest = after
    tag = _TAG.match(rest)
    if tag is None:
        return (None, None, sender, stamp, rest, None, True, level)
    return (
        tag.group(1),
        tag.group(2) or None,
        sender,
        stamp,
        rest[tag.end() :],
        None,
        True,
        level,
    )


class SyslogReader:
    """
    Turn syslog messages from one source (a TCP connection, or the UDP
    port) into records of their topics, and publish them.

    @cvar compiled: The compiled reader of frames that share a header
        (L{logio.ingest.speedups.octetFrames}), or L{None} for the Python
        loop of L{takeOctets} alone.
    @ivar malformed: Messages that were neither RFC 5424 nor RFC 3164.
    @ivar badTimes: Messages whose timestamp did not parse; they got the
        receive time.
    """

    compiled = octetFrames

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        stamps: StampParser,
        tokens: Optional[Tokens],
        now: Callable[[], str],
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.stamps = stamps
        self.tokens = tokens
        self.now = now
        self.malformed = 0
        self.badTimes = 0
        self._topics: dict[
            tuple[Optional[bytes], Optional[bytes], Optional[bytes], str], Topic
        ] = {}
        self._publications = Publications(broker, "syslog")
        self._allowed: dict[tuple[Optional[str], str], None] = {}
        #: Output timestamps by the TIMESTAMP they came as.
        self._stamps: dict[Optional[bytes], str] = {}

    def publish(self, messages: list[Parsed], peer: str, size: int) -> Optional[PublisherError]:
        """
        Publish C{messages} (see L{parseMessage}), each from C{peer}, in
        order.

        @param size: The bytes of input they took.
        @return: Why the rest was refused (a token that may not publish),
            after publishing what came before; or L{None}.
        """
        batches: Batches = {}
        error = None
        for message in messages:
            error = self.add(message, peer, batches)
            if error is not None:
                break
        self.flush(batches, size)
        return error

    def add(self, message: Parsed, peer: str, batches: Batches) -> Optional[PublisherError]:
        """
        Add the record of C{message}, from C{peer}, to its topic's batch.

        @return: Why it is refused (a token that may not publish), or
            L{None}.
        """
        app, proc, host, stamp, text, token, wellFormed, level = message
        if not wellFormed:
            self.malformed += 1
        topic = self._topics.get((app, proc, host, peer))
        if topic is None:
            topic = self._topic(app, proc, host, peer)
        if self.tokens is not None and (token, topic.app) not in self._allowed:
            try:
                checkAccess(self.tokens, token, topic.app, SD_TOKEN)
            except PublisherError as e:
                return e
            self._allowed[token, topic.app] = None
        formatted = self._stamps.get(stamp)
        if formatted is None:
            formatted = self._stamp(stamp)
        if text and text[-1] in _LINE_ENDS:
            text = text.rstrip(b"\r\n")
        record = (formatted, text.decode("utf-8", "replace"), level)
        batch = batches.get(topic)
        if batch is None:
            batches[topic] = [record]
        else:
            batch.append(record)
        return None

    def takeOctets(
        self, buffer: bytes, position: int, maxLine: int, peer: str, batches: Batches
    ) -> int:
        """
        Add the records of the octet-counted frames of the commonest shape
        (L{_FAST_OCTETS}) from C{position} on, as L{add} would, in a tighter
        loop; not with C{--auth}, where each message must show its token.

        @return: Where the first frame of another shape, or incomplete, begins.
        """
        if self.tokens is not None:
            return position
        match = _FAST_OCTETS.match
        length = len(buffer)
        stamps = self._stamps
        # The last frame read with the pattern: the bytes before its stamp,
        # the stamp's length, where its digits after the milliseconds (if
        # any: most stamps end at the milliseconds) begin,
        # its zone's length, the bytes from the stamp's end to the message,
        # and its topic.  A frame that has them all skips the pattern.
        before = b""
        stampLength = cut = zoneLength = 0
        after = b""
        topic: Optional[Topic] = None
        batch: list[Record] = []
        # The last timestamp up to its milliseconds, its zone, and its
        # output timestamp: frames of one millisecond and zone share it.
        millis = zone = b""
        formatted = ""
        level: Optional[str] = None
        compiled = self.compiled
        while True:
            if compiled is not None and topic is not None:
                # It takes the frames that share the last one's header, and
                # leaves the one it stopped at to this loop.
                position, millis, zone, formatted = compiled(
                    buffer,
                    position,
                    maxLine,
                    before,
                    after,
                    stampLength,
                    cut,
                    zoneLength,
                    millis,
                    zone,
                    formatted,
                    stamps,
                    self._stamp,
                    level,
                    batch,
                )
            space = buffer.find(b" ", position, position + MAX_COUNT_DIGITS + 1)
            count = buffer[position:space]
            if space < 0 or not count.isdigit():
                return position
            size = int(count)
            start = space + 1
            end = start + size
            if end > length or size > maxLine:
                return position
            stampStart = start + len(before)
            stampEnd = stampStart + stampLength
            if (
                topic is not None
                and buffer.startswith(before, start)
                and buffer.startswith(after, stampEnd)
                and _digitsOrNone(buffer[stampStart + cut : stampEnd - zoneLength])
                and stampEnd + len(after) <= end
            ):
                head = stampEnd + len(after)
                if not (
                    buffer.startswith(millis, stampStart)
                    and buffer.startswith(zone, stampEnd - zoneLength)
                ):
                    millis = buffer[stampStart : stampStart + cut]
                    zone = buffer[stampEnd - zoneLength : stampEnd]
                    formatted = stamps.get(millis + zone) or self._stamp(millis + zone)
            else:
                found = match(buffer, position)
                if found is None:
                    return position
                head = found.end()
                if head > end:
                    return position
                _, pri, millis, zone, host, app, proc = found.groups()
                level = fromSyslog(int(pri) & 7) if int(pri) <= 191 else None
                stampStart, stampEnd = found.start(3), found.end(4)
                before = buffer[start:stampStart]
                stampLength = stampEnd - stampStart
                cut = len(millis)
                zoneLength = len(zone)
                after = buffer[stampEnd:head]
                topic = self._topics.get((app, proc, host, peer))
                if topic is None:
                    topic = self._topic(app, proc, host, peer)
                batch = batches.setdefault(topic, [])
                formatted = stamps.get(millis + zone) or self._stamp(millis + zone)
            text = buffer[head:end]
            if text[:3] == _BOM:
                text = text[3:]
            if text and text[-1] in _LINE_ENDS:
                text = text.rstrip(b"\r\n")
            batch.append((formatted, text.decode("utf-8", "replace"), level))
            position = end

    def flush(self, batches: Batches, size: int) -> None:
        """
        Publish what L{add} and L{takeOctets} gathered.

        @param size: The bytes of input it took.
        """
        self._publications.publish(batches, size)

    def _topic(
        self, app: Optional[bytes], proc: Optional[bytes], host: Optional[bytes], peer: str
    ) -> Topic:
        """
        The topic of a message's fields (C{-} is absent too), made valid;
        cached.
        """
        key = (app, proc, host, peer)
        app, proc, host = (None if field == b"-" else field for field in (app, proc, host))
        appText = acceptable(app.decode("utf-8", "replace")) if app else DEFAULT_APP
        if appText == RESERVED_APP:
            appText = "_" + appText
        topic = Topic(
            appText,
            acceptable(proc.decode("utf-8", "replace")) if proc else "-",
            acceptable(host.decode("utf-8", "replace")) if host else peer,
        )
        if len(self._topics) >= MAX_TOPICS:
            self._topics.clear()
        self._topics[key] = topic
        return topic

    def _stamp(self, stamp: Optional[bytes]) -> str:
        """
        The output timestamp of a message's TIMESTAMP: RFC 3339 (RFC 5424)
        or C{Mmm dd hh:mm:ss } (RFC 3164); the receive time if it has none,
        or one that does not parse (counted).
        """
        if stamp is None:
            return self.now()
        if stamp[:1].isdigit():
            formatted = self.stamps(stamp.decode("ascii", "replace"))
        else:
            formatted = self._bsdStamp(stamp)
        if formatted is None:
            self.badTimes += 1
            return self.now()
        if len(self._stamps) >= MAX_TOPICS:
            self._stamps.clear()
        self._stamps[stamp] = formatted
        return formatted

    def _bsdStamp(self, stamp: bytes) -> Optional[str]:
        """
        Read an RFC 3164 timestamp, C{Mmm dd hh:mm:ss}, as UTC in the
        current year, or the year before for a month more than one ahead of
        now; L{None} for anything else (an RFC 5424 header takes any word
        as its timestamp).
        """
        match = _BSD_STAMP.match(stamp)
        if match is None:
            return None
        month, day, hour, minute, second = match.groups()
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        number = _MONTHS.get(month)
        if number is None:
            return None
        year = now.year - 1 if number > now.month + 1 else now.year
        try:
            when = datetime(year, number, int(day), int(hour), int(minute), int(second))
        except ValueError:
            return None
        return when.isoformat(timespec="milliseconds")

    def forgetAccess(self) -> None:
        """
        The tokens were reloaded: check every token again.
        """
        self._allowed.clear()

    def close(self) -> None:
        """
        Close every publication.
        """
        self._publications.close()


def _digitsOrNone(stamp: bytes) -> bool:
    """
    Whether the digits of a stamp past its milliseconds are digits, or
    there are none.
    """
    return not stamp or stamp.isdigit()
