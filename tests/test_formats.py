"""
Tests for L{logio.formats}: text lines, JSON lines and server-sent events,
their notices, and how a subscription chooses one.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from logio.formats import (
    JSONFormat,
    Segment,
    SSEFormat,
    TextFormat,
    chooseFormat,
    pack,
    parseEventId,
)
from logio.interfaces import IFormat
from logio.topic import Topic
from tests.support.http import sseEvents

TS = "2016-12-06T22:14:21.448"
WEB = Topic("myapp", "web", "foobar")
FORMATS = {f.name: f for f in (TextFormat("me"), JSONFormat(), SSEFormat(1700000000000))}


class FormatTests(SynchronousTestCase):
    """
    Each format encodes a batch once, into segments that say where records end.
    """

    def test_interface(self) -> None:
        """
        Every format provides L{IFormat}.
        """
        for format in FORMATS.values():
            self.assertTrue(verifyObject(IFormat, format))

    def test_text(self) -> None:
        """
        The text format is the seed's line, each physical line prefixed.
        """
        encode = FORMATS["text"].encoder(WEB)
        self.assertEqual(
            encode([(TS, "a", None), (TS, "b1\nb2", None)], [1, 2]),
            [
                Segment(f"{TS} myapp[web] foobar: a\n".encode(), 1, b"\n"),
                Segment(
                    f"{TS} myapp[web] foobar: b1\n{TS} myapp[web] foobar: b2\n".encode(), 2, None
                ),
            ],
        )

    def test_textEscapes(self) -> None:
        """
        In text output, control characters but tab, DEL, C1, the line and
        paragraph separators and bidi controls are shown as visible escapes,
        in single and multi-line records alike; everything else is kept.
        """
        encode = FORMATS["text"].encoder(WEB)
        prefix = f"{TS} myapp[web] foobar: "
        cases = [
            ("\x1b[2Jclear", "\\u001b[2Jclear"),
            ("ok\rforged", "ok\\u000dforged"),
            ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
            ("\u202egnp.exe\u2066", "\\u202egnp.exe\\u2066"),
            ("del\x7f c1\x85\x9b", "del\\u007f c1\\u0085\\u009b"),
            ("tab\tkept, caf\u00e9 \u2014 \u20ac", "tab\tkept, caf\u00e9 \u2014 \u20ac"),
        ]
        for raw, shown in cases:
            [segment] = encode([(TS, "plain", None), (TS, raw, None)], [1, 2])
            self.assertEqual(segment.data.decode(), f"{prefix}plain\n{prefix}{shown}\n", repr(raw))
        segments = encode([(TS, "a\x00\nb\x1b", None)], [1])
        self.assertEqual(
            segments, [Segment(f"{prefix}a\\u0000\n{prefix}b\\u001b\n".encode(), 2, None)]
        )

    def test_escapesOnlyInText(self) -> None:
        """
        JSON and SSE keep the exact text, JSON-escaped.
        """
        raw = "\x1b[2J\r\u2028\u202e"
        for name in ("json", "sse"):
            [segment] = FORMATS[name].encoder(WEB)([(TS, raw, None)], [1])
            data = segment.data.decode().partition("data: ")[2] or segment.data.decode()
            self.assertEqual(json.loads(data)["log"], raw)

    def test_json(self) -> None:
        """
        One JSON object per record with exactly C{seq time app proc host
        log}; a multi-line record, quotes, unicode and controls round-trip.
        """
        records = [(TS, "a", None), (TS, 'Traceback:\n  "x" \\ é\t\x01', None), (TS, "€", None)]
        [segment] = FORMATS["json"].encoder(WEB)(records, [7, 8, 9])
        self.assertEqual((segment.lines, segment.end), (3, b"\n"))
        objects = [json.loads(line) for line in segment.data.decode().splitlines()]
        self.assertEqual(
            objects[0],
            {
                "seq": 7,
                "time": f"{TS}Z",
                "app": "myapp",
                "proc": "web",
                "host": "foobar",
                "log": "a",
            },
        )
        self.assertEqual(list(objects[0]), ["seq", "time", "app", "proc", "host", "log"])
        self.assertEqual([o["log"] for o in objects], [text for _, text, _ in records])
        self.assertEqual([o["seq"] for o in objects], [7, 8, 9])

    def test_jsonTopicEscaped(self) -> None:
        """
        Topic fields are JSON-escaped too.
        """
        [segment] = FORMATS["json"].encoder(Topic('a"b', "p\\", "h"))([(TS, "x", None)], [1])
        self.assertEqual(json.loads(segment.data)["app"], 'a"b')
        self.assertEqual(json.loads(segment.data)["proc"], "p\\")

    def test_jsonLoneSurrogate(self) -> None:
        """
        A lone surrogate is written as C{?}: the output is valid UTF-8 JSON.
        """
        for text in ("a\ud800b", 'a\ud800"'):
            [segment] = FORMATS["json"].encoder(WEB)([(TS, text, None)], [1])
            self.assertEqual(
                json.loads(segment.data.decode("utf-8"))["log"], text.replace("\ud800", "?")
            )

    def test_sse(self) -> None:
        """
        One event per record: C{id: <start>-<seq>} and the JSON object as its data.
        """
        [segment] = FORMATS["sse"].encoder(WEB)([(TS, "a", None), (TS, "b\nc", None)], [5, 6])
        self.assertEqual((segment.lines, segment.end), (2, b"\n\n"))
        events = sseEvents(segment.data)
        self.assertEqual([e["id"] for e in events], ["1700000000000-5", "1700000000000-6"])
        self.assertEqual([json.loads(e["data"])["log"] for e in events], ["a", "b\nc"])

    def test_levels(self) -> None:
        """
        JSON and SSE objects end with the record's level where it is known
        (given by its source, or a level word its text starts with), and
        have no C{level} otherwise; the text output is the same either way.
        """
        records = [(TS, "plain", None), (TS, "ERROR x", None), (TS, "y", "warn")]
        seqs = [1, 2, 3]
        [segment] = FORMATS["json"].encoder(WEB)(records, seqs)
        objects = [json.loads(line) for line in segment.data.decode().splitlines()]
        self.assertEqual([o.get("level") for o in objects], [None, "error", "warn"])
        self.assertEqual(list(objects[1]), ["seq", "time", "app", "proc", "host", "log", "level"])
        [segment] = FORMATS["sse"].encoder(WEB)(records, seqs)
        events = [json.loads(event["data"]) for event in sseEvents(segment.data)]
        self.assertEqual(events, objects)
        self.assertEqual(
            FORMATS["text"].encoder(WEB)(records, seqs),
            FORMATS["text"].encoder(WEB)([(TS, text, None) for _, text, _ in records], seqs),
        )
        unlevelled = FORMATS["json"].encoder(WEB)([(TS, "a", None)], [1])[0].data
        self.assertNotIn(b"level", unlevelled)

    def test_keepSGR(self) -> None:
        """
        The text format of C{ansi=keep} passes colour sequences and escapes
        the rest; the plain one escapes both.
        """
        records = [(TS, "\x1b[31mred\x1b[0m \x1b[2J", None)]
        [kept] = TextFormat("me", keepSGR=True).encoder(WEB)(records, [1])
        [escaped] = FORMATS["text"].encoder(WEB)(records, [1])
        prefix = f"{TS} myapp[web] foobar: "
        self.assertEqual(kept.data.decode(), prefix + "\x1b[31mred\x1b[0m \\u001b[2J\x1b[0m\n")
        self.assertEqual(escaped.data.decode(), prefix + "\\u001b[31mred\\u001b[0m \\u001b[2J\n")

    def test_notices(self) -> None:
        """
        A drop notice is a line, an object, or an C{event: dropped}; other
        notices are C{event: notice} and carry no count.
        """
        self.assertEqual(
            FORMATS["text"].notice(TS, "3 lines dropped: x", 3),
            f"{TS} logio[logio] me: 3 lines dropped: x\n".encode(),
        )
        self.assertEqual(
            json.loads(FORMATS["json"].notice(TS, "3 lines dropped: x", 3)),
            {"dropped": 3, "time": f"{TS}Z", "notice": "3 lines dropped: x"},
        )
        [dropped] = sseEvents(FORMATS["sse"].notice(TS, "gone", 3))
        self.assertEqual(dropped["event"], "dropped")
        self.assertNotIn("id", dropped)
        self.assertEqual(json.loads(dropped["data"])["dropped"], 3)
        [notice] = sseEvents(FORMATS["sse"].notice(TS, "hello", None))
        self.assertEqual(notice["event"], "notice")
        self.assertEqual(json.loads(notice["data"]), {"time": f"{TS}Z", "notice": "hello"})


class ChooseTests(SynchronousTestCase):
    """
    C{?format=} wins, then C{Accept}, then text.
    """

    def test_choose(self) -> None:
        """
        The query names a format; else the first known media type in C{Accept}.
        """
        cases = [
            ("json", None, "json"),
            ("sse", b"application/x-ndjson", "sse"),
            (None, b"text/event-stream", "sse"),
            (None, b"text/html, application/x-ndjson;q=0.9", "json"),
            (None, b"*/*", "text"),
            (None, None, "text"),
        ]
        for asked, accept, name in cases:
            self.assertEqual(chooseFormat(FORMATS, asked, accept).name, name, (asked, accept))

    def test_unknown(self) -> None:
        """
        An unknown C{?format=} is an error naming the known ones.
        """
        e = self.assertRaises(ValueError, chooseFormat, FORMATS, "xml", None)
        self.assertIn("'xml'", str(e))
        self.assertIn("text, json, sse", str(e))

    def test_eventIds(self) -> None:
        """
        An id of this run gives its seq; another run's gives L{None}; junk is an error.
        """
        self.assertEqual(parseEventId("1700000000000-42", 1700000000000), 42)
        self.assertIsNone(parseEventId("1600000000000-42", 1700000000000))
        for bad in ("42", "a-1", "1-", "-1", "1-2-3", "١-٢"):
            self.assertRaises(ValueError, parseEventId, bad, 1700000000000)

    def test_hugeEventIds(self) -> None:
        """
        An id with numbers longer than any this server writes (10 KB of
        digits) is refused in our own words, quoted short, not Python's.
        """
        for huge in ("1" * 10000 + "-1", "1700000000000-" + "9" * 10000):
            e = self.assertRaises(ValueError, parseEventId, huge, 1700000000000)
            self.assertTrue(str(e).startswith("not a logio event id"), str(e)[:100])
            self.assertLess(len(str(e)), 200)
            self.assertNotIn("digits", str(e))


class PackTests(SynchronousTestCase):
    """
    L{pack} turns formatted lines into as few segments as possible.
    """

    def test_singleLines(self) -> None:
        """
        Single-line records become one splittable segment.
        """
        self.assertEqual(
            pack(["t p: a\n", "t p: b\n"], " p: "), [Segment(b"t p: a\nt p: b\n", 2, b"\n")]
        )

    def test_multiLineSegments(self) -> None:
        """
        Multi-line records become their own unsplittable segments, prefix repeated.
        """
        self.assertEqual(
            pack(["t p: a\n", "t p: b1\nb2\n", "t p: c\n", "t p: d\n"], " p: "),
            [
                Segment(b"t p: a\n", 1, b"\n"),
                Segment(b"t p: b1\nt p: b2\n", 2, None),
                Segment(b"t p: c\nt p: d\n", 2, b"\n"),
            ],
        )
