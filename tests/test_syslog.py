"""
Tests for L{logio.ingest.syslog}: RFC 5424 and RFC 3164 messages, both TCP
framings and their chunking invariance, and syslog over UDP.
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
            b"<13>Foo 1 x",
        ):
            self.assertEqual(
                parseMessage(frame), (None, None, None, None, frame, None, False, None), frame
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
        Whole, byte by byte, or split at any offset, a stream of both
        framings publishes the same.
        """
        stream = (
            octets(RFC5424_EXAMPLES[0][0])
            + RFC3164_EXAMPLES[2][0]
            + b"\n"
            + octets(RFC5424_EXAMPLES[2][0])
            + b"<13>1 - h last - - - no newline"
        )
        expected = published(connect().feed(stream).close())
        self.assertEqual(len(expected), 4)
        self.assertEqual(
            published(connect().feed(*[stream[i : i + 1] for i in range(len(stream))]).close()),
            expected,
        )
        for split in range(1, len(stream)):
            connection = connect().feed(stream[:split], stream[split:]).close()
            self.assertEqual(published(connection), expected, split)

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

    def test_malformedPublishedAsText(self) -> None:
        """
        A malformed message is published whole under app syslog with the
        receive time, counted, and the connection goes on.
        """
        connection = connect().feed(b"<13>garbage here\n<13>1 - h ok - - - fine\n")
        self.assertEqual(
            published(connection),
            [
                (Topic("syslog", "-", PEER), (NOW_TS, "<13>garbage here", None)),
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
