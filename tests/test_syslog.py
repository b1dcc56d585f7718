"""
Tests for L{logio.ingest.syslog}: RFC 5424 and RFC 3164 messages, the legacy
forms of Go's log/syslog and Python's SysLogHandler, every TCP framing
(octet counting, newline, NUL) and their chunking invariance, and syslog
over UDP.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from logio.auth import Tokens
from logio.ingest.syslog import parseMessage
from logio.ingest.syslognet import SyslogDatagramProtocol
from logio.refusals import Refusals
from logio.settings import Settings
from logio.topic import Record, Topic
from tests.support.fakes import FakeBroker
from tests.support.publisher import NOW, NOW_TS, PEER, Connection, connect
from tests.support.tokens import tokensFile

BOM = b"\xef\xbb\xbf"

#: The four examples of RFC 5424 section 6.5, and what each publishes.
RFC5424_EXAMPLES = [
    (
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        + BOM
        + b"'su root' failed for lonvick on /dev/pts/8",
        Topic("su", "-", "mymachine.example.com"),
        ("2003-10-11T22:14:15.003", "'su root' failed for lonvick on /dev/pts/8", "fatal"),
    ),
    (
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
        b"%% It's time to make the do-nuts.",
        Topic("myproc", "8710", "192.0.2.1"),
        ("2003-08-24T12:14:15.000", "%% It's time to make the do-nuts.", "notice"),
    ),
    (
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] '
        + BOM
        + b"An application event log entry...",
        Topic("evntslog", "-", "mymachine.example.com"),
        ("2003-10-11T22:14:15.003", "An application event log entry...", "notice"),
    ),
    (
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        b'[examplePriority@32473 class="high"]',
        Topic("evntslog", "-", "mymachine.example.com"),
        ("2003-10-11T22:14:15.003", "", "notice"),
    ),
]

#: The examples of RFC 3164 section 5.4 (with the server's clock in July
#: 2017, so October and February are this year), and what each publishes.
RFC3164_EXAMPLES = [
    (
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        Topic("su", "-", "mymachine"),
        ("2016-10-11T22:14:15.000", "'su root' failed for lonvick on /dev/pts/8", "fatal"),
    ),
    (
        b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
        Topic("syslog", "-", "10.0.0.99"),
        ("2017-02-05T17:32:18.000", "Use the BFG!", "notice"),
    ),
    (
        b"<165>Aug 24 05:34:00 mymachine myproc[10]: %% It's time to make the do-nuts.",
        Topic("myproc", "10", "mymachine"),
        ("2017-08-24T05:34:00.000", "%% It's time to make the do-nuts.", "notice"),
    ),
    (
        b"<13>Jul  3 09:01:02 cron[99]: no host name",
        Topic("cron", "99", PEER),
        ("2017-07-03T09:01:02.000", "no host name", "notice"),
    ),
]


#: Go's log/syslog (an RFC 3339 time in an RFC 3164 header), whole seconds
#: in UTC and, as rsyslog forwards it, a fraction and an offset.
GO_EXAMPLES = [
    (
        b"<27>2026-12-05T00:16:01Z vm goapp[29330]: msg",
        Topic("goapp", "29330", "vm"),
        ("2026-12-05T00:16:01.000", "msg", "error"),
    ),
    (
        b"<30>2026-12-05T00:16:01.123456+01:00 vm goapp[29330]: with an offset",
        Topic("goapp", "29330", "vm"),
        ("2026-12-04T23:16:01.123", "with an offset", "info"),
    ),
]

#: Python's SysLogHandler: the PRI, then the ident and formatted record,
#: no header (the NUL it appends is the transport's business).
HEADERLESS_EXAMPLES = [
    (
        b"<11>myapp[28589]: ERROR text",
        Topic("myapp", "28589", PEER),
        (NOW_TS, "ERROR text", "error"),
    ),
    (b"<12>myapp: an ident", Topic("myapp", "-", PEER), (NOW_TS, "an ident", "warn")),
    (b"<14>no tag at all", Topic("syslog", "-", PEER), (NOW_TS, "no tag at all", "info")),
    (b"<10>Foo 1 x", Topic("syslog", "-", PEER), (NOW_TS, "Foo 1 x", "fatal")),
    (b"<15>db.pool[7]: ", Topic("db.pool", "7", PEER), (NOW_TS, "", "debug")),
]

#: A header-less message over several lines, as C{logger.exception} sends it.
TRACEBACK = (
    b"<11>myapp[1]: it failed\nTraceback (most recent call last):\n"
    b'  File "<stdin>", line 1, in <module>\nValueError: bad'
)


def octets(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


def published(connection: Connection) -> list[tuple[Topic, Record]]:
    """
    Every record published, with its topic, in order.
    """
    return [(topic, record) for topic, records in connection.broker.published for record in records]


class ParseTests(SynchronousTestCase):
    """
    What one message means.
    """

    def test_structuredDataEscapes(self) -> None:
        """
        Structured data values may hold escaped C{]}, C{"} and C{\\}; the
        message starts after the last element.
        """
        frame = b'<13>1 - h app - - [a@1 x="q\\]\\"\\\\" y=""][b@2] text ] here'
        app, proc, host, stamp, text, token, wellFormed, level = parseMessage(frame)
        self.assertEqual(
            (app, proc, host, stamp, text, wellFormed, level),
            (b"app", None, b"h", None, b"text ] here", True, "notice"),
        )

    def test_nilValues(self) -> None:
        """
        NILVALUEs are absent fields; a message may be absent too.
        """
        self.assertEqual(
            parseMessage(b"<13>1 - - - - - -"),
            (None, None, None, None, b"", None, True, "notice"),
        )

    def test_token(self) -> None:
        """
        The token is the C{token} parameter of a C{logio} or C{logio@...}
        element, unescaped.
        """
        for element in (b'[logio token="t\\"k"]', b'[x@1 a="b"][logio@32473 token="t\\"k"]'):
            self.assertEqual(parseMessage(b"<13>1 - h a - - " + element + b" m")[5], 't"k')
        self.assertIsNone(parseMessage(b'<13>1 - h a - - [other@1 token="x"] m')[5])

    def test_malformed(self) -> None:
        """
        A frame that is neither form is not well-formed; its whole bytes are its text.
        """
        for frame in (
            b"plain words",
            b"<13>1 - h",
            b'<13>1 - h a - - [unclosed x="1" m',
            b"<14>1 file copied",
            b"<192>no header",
            b"<1x>text",
        ):
            self.assertEqual(
                parseMessage(frame), (None, None, None, None, frame, None, False, None), frame
            )

    def test_goLogSyslog(self) -> None:
        """
        An RFC 3339 time in an RFC 3164 header: host, tag, pid and text
        as in RFC 3164, the time as it came.
        """
        self.assertEqual(
            parseMessage(GO_EXAMPLES[0][0]),
            (b"goapp", b"29330", b"vm", b"2026-12-05T00:16:01Z", b"msg", None, True, "error"),
        )
        self.assertEqual(
            parseMessage(b"<27>2026-12-05T00:16:01.5-03:30 goapp: no host")[:5],
            (b"goapp", None, None, b"2026-12-05T00:16:01.5-03:30", b"no host"),
        )

    def test_headerless(self) -> None:
        """
        The PRI and then at once the tag, or only the text: app and proc
        from the tag, no host and no time (the peer's and the receive
        time), the level from the PRI, and it is well-formed.
        """
        self.assertEqual(
            parseMessage(b"<11>myapp[28589]: ERROR text"),
            (b"myapp", b"28589", None, None, b"ERROR text", None, True, "error"),
        )
        self.assertEqual(
            parseMessage(b"<14>just text: here"),
            (None, None, None, None, b"just text: here", None, True, "info"),
        )
        self.assertEqual(parseMessage(b"<13>")[4:], (b"", None, True, "notice"))
        self.assertEqual(
            parseMessage(TRACEBACK)[:5],
            (b"myapp", b"1", None, None, TRACEBACK.split(b": ", 1)[1]),
        )

    def test_levels(self) -> None:
        """
        SysLogHandler's PRIs for its levels (facility user) give the levels
        of the same names.
        """
        self.assertEqual(
            [parseMessage(b"<%d>app: m" % pri)[7] for pri in (10, 11, 12, 14, 15)],
            ["fatal", "error", "warn", "info", "debug"],
        )

    def test_headersNotMisread(self) -> None:
        """
        RFC 3164 and RFC 5424 messages are still read as such, not as
        header-less ones.
        """
        self.assertEqual(
            parseMessage(b"<13>Feb  5 17:32:18 host tag: msg"),
            (b"tag", None, b"host", b"Feb  5 17:32:18 ", b"msg", None, True, "notice"),
        )
        self.assertEqual(
            parseMessage(b"<13>1 2003-10-11T22:14:15.003Z h app 12 - - m"),
            (b"app", b"12", b"h", b"2003-10-11T22:14:15.003Z", b"m", None, True, "notice"),
        )


class TCPTests(SynchronousTestCase):
    """
    Syslog on the publisher port, through the sniffing protocol.
    """

    def test_rfc5424Examples(self) -> None:
        """
        The RFC's examples, octet-counted: each record has its own topic,
        its time and text (a BOM removed).
        """
        stream = b"".join(octets(message) for message, _, _ in RFC5424_EXAMPLES)
        connection = connect().feed(stream)
        self.assertEqual(
            published(connection), [(topic, record) for _, topic, record in RFC5424_EXAMPLES]
        )
        self.assertEqual(connection.transport.value(), b"")

    def test_rfc3164Examples(self) -> None:
        """
        The RFC's BSD examples, newline-framed: the year is the server's
        (the one before for a month more than one ahead), the time UTC.
        """
        stream = b"".join(message + b"\n" for message, _, _ in RFC3164_EXAMPLES)
        connection = connect().feed(stream)
        self.assertEqual(
            published(connection), [(topic, record) for _, topic, record in RFC3164_EXAMPLES]
        )

    def test_goExamples(self) -> None:
        """
        Go's log/syslog, newline-framed: app, proc and host from its
        header, its RFC 3339 time (UTC, to the millisecond), the level
        from the PRI.
        """
        stream = b"".join(message + b"\n" for message, _, _ in GO_EXAMPLES)
        self.assertEqual(
            published(connect().feed(stream)),
            [(topic, record) for _, topic, record in GO_EXAMPLES],
        )

    def test_nulFraming(self) -> None:
        """
        Each message SysLogHandler sends ends with a NUL and nothing else;
        a newline after the NUL, or a last message with neither, are fine.
        """
        for stream in (
            b"".join(message + b"\0" for message, _, _ in HEADERLESS_EXAMPLES),
            b"".join(message + b"\0\n" for message, _, _ in HEADERLESS_EXAMPLES),
            b"\0".join(message for message, _, _ in HEADERLESS_EXAMPLES),
        ):
            connection = connect().feed(stream).close()
            self.assertEqual(
                published(connection),
                [(topic, record) for _, topic, record in HEADERLESS_EXAMPLES],
                stream,
            )

    def test_nulEndsEveryForm(self) -> None:
        """
        A NUL ends a message that is not octet-counted, whatever its form.
        """
        stream = b"\0".join(
            [RFC5424_EXAMPLES[1][0], RFC3164_EXAMPLES[2][0], GO_EXAMPLES[0][0], b""]
        )
        self.assertEqual(
            published(connect().feed(stream)),
            [
                (RFC5424_EXAMPLES[1][1], RFC5424_EXAMPLES[1][2]),
                (RFC3164_EXAMPLES[2][1], RFC3164_EXAMPLES[2][2]),
                (GO_EXAMPLES[0][1], GO_EXAMPLES[0][2]),
            ],
        )

    def test_nulInOctetCounted(self) -> None:
        """
        A NUL inside an octet-counted frame is text, on the fast path and
        the other.
        """
        frames = [
            b"<13>1 2003-10-11T22:14:15.003Z h app - - - a\0b",
            b'<13>1 - h app - - [x@1 y="z"] c\0d',
        ]
        connection = connect().feed(b"".join(octets(frame) for frame in frames))
        self.assertEqual(
            [record for _, record in published(connection)],
            [("2003-10-11T22:14:15.003", "a\0b", "notice"), (NOW_TS, "c\0d", "notice")],
        )

    def test_headerlessMultiLine(self) -> None:
        """
        A header-less message spans lines up to its NUL, as a traceback
        does; without a NUL it ends at a newline that another message
        follows.
        """
        text = TRACEBACK.split(b": ", 1)[1].decode()
        expected = [
            (Topic("myapp", "1", PEER), (NOW_TS, text, "error")),
            (Topic("next", "-", PEER), (NOW_TS, "one\n  two", "info")),
            (Topic("app", "-", "h"), (NOW_TS, "5424", "notice")),
        ]
        for stream in (
            TRACEBACK + b"\0<14>next: one\n  two\0<13>1 - h app - - - 5424\n",
            TRACEBACK + b"\n<14>next: one\n  two\r\n<13>1 - h app - - - 5424\n",
            TRACEBACK + b"\0\n<14>next: one\n  two\n\n<13>1 - h app - - - 5424",
        ):
            self.assertEqual(published(connect().feed(stream).close()), expected, stream)

    def test_headerlessLastMessage(self) -> None:
        """
        A header-less message that ends with a newline waits for what
        follows (more lines of it, or another message), or for the end of
        the connection.
        """
        connection = connect().feed(b"<14>app: first\n")
        self.assertEqual(published(connection), [])
        connection.feed(b"<14>app: second\n")
        self.assertEqual([record[1] for _, record in published(connection)], ["first"])
        connection.close()
        self.assertEqual([record[1] for _, record in published(connection)], ["first", "second"])

    def test_framingsMixed(self) -> None:
        """
        A connection may switch between the two framings at any frame; CRLF
        and blank lines between frames are fine.
        """
        one, two, three = (message for message, _, _ in RFC5424_EXAMPLES[:3])
        connection = connect().feed(one + b"\r\n" + octets(two) + b"\n\n" + three + b"\n")
        self.assertEqual(
            [record for _, record in published(connection)],
            [record for _, _, record in RFC5424_EXAMPLES[:3]],
        )

    def test_chunkingInvariance(self) -> None:
        """
        Whole, byte by byte, or split at any offset, a stream of every
        framing and form publishes the same.
        """
        stream = (
            octets(RFC5424_EXAMPLES[0][0])
            + RFC3164_EXAMPLES[2][0]
            + b"\n"
            + octets(b"<13>1 - h app - - - a\0b")
            + HEADERLESS_EXAMPLES[0][0]
            + b"\0"
            + TRACEBACK
            + b"\0\n"
            + GO_EXAMPLES[1][0]
            + b"\0"
            + TRACEBACK.replace(b"myapp[1]", b"other[2]")
            + b"\n"
            + RFC3164_EXAMPLES[0][0]
            + b"\n"
            + octets(RFC5424_EXAMPLES[2][0])
            + b"<13>1 - h last - - - no newline"
        )
        expected = published(connect().feed(stream).close())
        self.assertEqual(len(expected), 10)
        self.assertEqual(
            published(connect().feed(*[stream[i : i + 1] for i in range(len(stream))]).close()),
            expected,
        )
        for split in range(1, len(stream)):
            connection = connect().feed(stream[:split], stream[split:]).close()
            self.assertEqual(published(connection), expected, split)

    def test_fastPathSameAsPattern(self) -> None:
        """
        Octet-counted frames read in one piece (after the first, those of
        the same shape skip the pattern) publish the same as each read
        alone (each through the pattern): stamps with milliseconds or
        more digits or none, zones, shapes that change, a stamp that is no
        time.
        """
        stamps = [
            b"2016-12-06T22:14:21.448Z",
            b"2016-12-06T22:14:21.449Z",
            b"2016-12-06T22:14:22.001Z",
            b"2016-12-06T22:14:22.001+01:00",
            b"2016-12-06T22:14:22.001234Z",
            b"2016-12-06T22:14:22.001235Z",
            b"2016-12-06T22:14:23Z",
            b"2016-12-06T22:14:24Z",
            b"2016-12-06T22:14:25.5Z",
            b"2016-12-06T22:14:25.6Z",
            b"2016-99-06T22:14:25.600Z",
            b"2016-12-06T22:14:25.601Z",
        ]
        frames = [
            octets(b"<%d>1 %s h app%d - - - n %d" % (pri, stamp, n // 4, n))
            for pri in (13, 11)
            for n, stamp in enumerate(stamps)
        ]
        # One read publishes a batch per topic: compare each topic's records.
        whole = sorted(published(connect().feed(b"".join(frames)).close()), key=lambda r: r[0].app)
        alone = sorted(published(connect().feed(*frames).close()), key=lambda r: r[0].app)
        self.assertEqual(len(whole), len(frames))
        self.assertEqual(whole, alone)
        self.assertEqual(
            [record[0] for _, record in whole[:2]],
            ["2016-12-06T22:14:21.448", "2016-12-06T22:14:21.449"],
        )

    def test_overLongCut(self) -> None:
        """
        A frame longer than --max-line is cut there and marked, in both
        framings, and what follows it is read.
        """
        long = b"<13>1 - h app - - - " + b"x" * 200
        for stream in (
            octets(long) + octets(b"<13>1 - h app - - - next"),
            long + b"\n<13>1 - h app - - - next\n",
        ):
            for reads in ([stream], [stream[i : i + 7] for i in range(0, len(stream), 7)]):
                connection = connect(maxLine=100).feed(*reads)
                records = [record for _, record in published(connection)]
                self.assertEqual(records[-1], (NOW_TS, "next", "notice"))
                self.assertEqual(records[0], (NOW_TS, "x" * 80 + " [truncated]", "notice"))
                self.assertEqual(len(records), 2)

    def test_overLongHeaderlessCut(self) -> None:
        """
        A header-less message longer than --max-line is cut there and the
        rest of it skipped up to its end (its NUL, or a newline before
        another message), however the stream is split.
        """
        long = b"<11>app: " + b"line\n" * 40
        # The last message of each has a terminator: nothing waits for the
        # end of the connection.
        for stream in (
            long + b"end\0<14>app: next\0",
            long + b"end\n<14>app: next\0",
            long + b"  <not next\n<14>app: next\0",
        ):
            expected = [
                (NOW_TS, "line\n" * 18 + "l [truncated]", "error"),
                (NOW_TS, "next", "info"),
            ]
            cutOff = len(stream.split(b"<14>")[0]) - 1 - 100
            for split in range(len(stream)):
                connection = connect(maxLine=100).feed(stream[:split], stream[split:])
                self.assertEqual([record for _, record in published(connection)], expected, split)
                self.assertEqual(connection.protocol.parser.discarded, cutOff, split)
            reads = [stream[i : i + 1] for i in range(len(stream))]
            connection = connect(maxLine=100).feed(*reads)
            self.assertEqual([record for _, record in published(connection)], expected)
            self.assertEqual(connection.protocol.parser.discarded, cutOff)

    def test_malformedPublishedAsText(self) -> None:
        """
        A malformed message is published whole under app syslog with the
        receive time, counted, and the connection goes on.
        """
        connection = connect().feed(b"<999>garbage here\n<13>1 - h ok - - - fine\n")
        self.assertEqual(
            published(connection),
            [
                (Topic("syslog", "-", PEER), (NOW_TS, "<999>garbage here", None)),
                (Topic("ok", "-", "h"), (NOW_TS, "fine", "notice")),
            ],
        )
        with capturedLogs() as events:
            connection.close()
        self.assertIn("1 messages were not RFC 5424 or 3164", formatEvent(events[-1]))

    def test_fieldsMadeValid(self) -> None:
        """
        A character a topic field may not hold becomes "_", and the app
        "logio" becomes "_logio": the message is kept.
        """
        connection = connect().feed(
            b"<13>1 - h logio - - - one\n<13>Jul  1 00:00:00 h\xe2\x80\xaex tag[a]b]: two\n"
        )
        self.assertEqual(
            [topic for topic, _ in published(connection)],
            [Topic("_logio", "-", "h"), Topic("syslog", "-", "h_x")],
        )

    def test_badTimestamp(self) -> None:
        """
        A timestamp that does not parse gives the receive time.
        """
        connection = connect().feed(
            b"<13>1 2003-13-45T99:00:00Z h a - - - m\n<13>Feb 30 00:00:00 h a: m\n"
        )
        self.assertEqual(
            [record for _, record in published(connection)],
            [(NOW_TS, "m", "notice"), (NOW_TS, "m", "notice")],
        )

    def test_timestampOfNoForm(self) -> None:
        """
        An RFC 5424 timestamp of neither form (its header takes any word
        there) gives the receive time too, and is counted, the next message
        read as ever.
        """
        connection = connect().feed(b"<13>1 Xmas h a - - - m\n<13>1 - h a - - - n\n")
        self.assertEqual(
            [record for _, record in published(connection)],
            [(NOW_TS, "m", "notice"), (NOW_TS, "n", "notice")],
        )
        self.assertEqual(connection.protocol.parser.reader.badTimes, 1)


TOKEN = "syslog-token-0123456789"


class SyslogTokenTests(SynchronousTestCase):
    """
    With --auth, a message's token is in its structured data.
    """

    def setUp(self) -> None:
        self.tokens = Tokens(tokensFile(self, f"{TOKEN} pub web|db\n"))

    def test_allowed(self) -> None:
        """
        A token that allows the message's app lets it in.
        """
        frame = b'<13>1 - h web - - [logio@32473 token="%s"] hi\n' % TOKEN.encode()
        connection = connect(tokens=self.tokens).feed(frame)
        self.assertEqual(
            published(connection), [(Topic("web", "-", "h"), (NOW_TS, "hi", "notice"))]
        )

    def test_refused(self) -> None:
        """
        A message without a token, or for an app its token does not allow,
        is refused with one error line; what came before is published.
        """
        good = b'<13>1 - h web - - [logio token="%s"] first\n' % TOKEN.encode()
        for bad, says in [
            (
                b"<13>1 - h web - - - no token\n",
                b"error: this server needs a token: send it in RFC 5424 structured data",
            ),
            (
                b'<13>1 - h mail - - [logio token="%s"] x\n' % TOKEN.encode(),
                b"error: this token may not publish to the app 'mail'",
            ),
            (b"<13>Jul  1 00:00:00 h web: bsd\n", b"error: this server needs a token"),
        ]:
            connection = connect(tokens=self.tokens).feed(good + bad)
            self.assertEqual([record[1] for _, record in published(connection)], ["first"])
            self.assertTrue(
                connection.transport.value().startswith(says), connection.transport.value()
            )
            self.assertTrue(connection.transport.disconnecting)


class UDPTests(SynchronousTestCase):
    """
    Syslog over UDP: one message per datagram.
    """

    def protocol(self, tokens: Tokens | None = None) -> tuple[SyslogDatagramProtocol, FakeBroker]:
        broker, clock = FakeBroker(), Clock()
        clock.advance(NOW)
        return SyslogDatagramProtocol(
            broker, clock, Settings(maxLine=100, public=True), Refusals(broker.stats, clock), tokens
        ), broker

    def test_datagrams(self) -> None:
        """
        Each datagram is one message (a trailing newline dropped); a long
        one is cut and marked.
        """
        protocol, broker = self.protocol()
        protocol.datagramReceived(RFC5424_EXAMPLES[1][0] + b"\n", ("10.1.2.3", 514))
        protocol.datagramReceived(b"<13>1 - - a - - - " + b"y" * 200, ("10.1.2.3", 514))
        self.assertEqual(
            [(topic, record) for topic, records in broker.published for record in records],
            [
                (RFC5424_EXAMPLES[1][1], RFC5424_EXAMPLES[1][2]),
                (Topic("a", "-", "10.1.2.3"), (NOW_TS, "y" * 82 + " [truncated]", "notice")),
            ],
        )

    def test_refusedDropped(self) -> None:
        """
        With --auth, a datagram without a good token is dropped and the
        refusal logged.
        """
        tokens = Tokens(tokensFile(self, f"{TOKEN} pub web\n"))
        protocol, broker = self.protocol(tokens)
        with capturedLogs() as events:
            protocol.datagramReceived(b"<13>1 - h web - - - no token", ("10.1.2.3", 514))
        self.assertEqual(broker.published, [])
        self.assertIn(
            "Refused a publisher: no token: 10.1.2.3 (syslog over UDP)", formatEvent(events[0])
        )
        protocol.datagramReceived(
            b'<13>1 - h web - - [logio token="%s"] ok' % TOKEN.encode(), ("10.1.2.3", 514)
        )
        self.assertEqual(len(broker.published), 1)

    def test_pythonSysLogHandler(self) -> None:
        """
        What SysLogHandler sends over UDP, its NUL at the end: the tag's
        app and proc, the peer as host, the receive time, the level of
        the PRI; a traceback stays in its one record.
        """
        protocol, broker = self.protocol()
        protocol.datagramReceived(b"<11>myapp[28589]: ERROR text\0", ("10.1.2.3", 514))
        protocol.datagramReceived(b"<14>plain\0", ("10.1.2.3", 514))
        protocol.datagramReceived(TRACEBACK[:80] + b"\0", ("10.1.2.3", 514))
        self.assertEqual(
            [(topic, record) for topic, records in broker.published for record in records],
            [
                (Topic("myapp", "28589", "10.1.2.3"), (NOW_TS, "ERROR text", "error")),
                (Topic("syslog", "-", "10.1.2.3"), (NOW_TS, "plain", "info")),
                (
                    Topic("myapp", "1", "10.1.2.3"),
                    (NOW_TS, TRACEBACK[14:80].decode(), "error"),
                ),
            ],
        )
