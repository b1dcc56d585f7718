"""
The compiled fast paths (C{_logio_speedups}, built by C{pip install .})
publish exactly what the Python loops they stand in for do: the seed
decoder for records of the Go client's shape and everything near it, the
syslog reader for octet-counted frames of every header; however the stream
is split into reads.  The store's flat packing gives the same values as
Python's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from logio.ingest import speedups
from logio.ingest.seed import SeedProtocol
from logio.ingest.syslog import SyslogReader
from logio.packing import STAMP, pack, packRecords, unpack
from logio.topic import Record
from tests.test_fuzz_publish import Publisher, chunkSizes, outcome, records, setUp

TOPIC = b'{"app":"fuzz","proc":"p","host":"h"}'
COMPARE = settings(max_examples=300, deadline=None)


@contextmanager
def decoder(compiled: bool) -> Iterator[None]:
    """
    Publishers made inside use the compiled fast paths, or (C{False}) the
    Python loops alone.
    """
    saved = SeedProtocol.compiled, SyslogReader.compiled
    SeedProtocol.compiled = speedups.goRecords if compiled else None
    SyslogReader.compiled = speedups.octetFrames if compiled else None
    try:
        yield
    finally:
        SeedProtocol.compiled, SyslogReader.compiled = saved


def both(stream: bytes, sizes: list[int]) -> tuple[Any, Any]:
    """
    What C{stream} publishes and writes back through the Python loops, and
    through the compiled fast paths.
    """
    with decoder(False):
        python = outcome(stream, sizes)
    with decoder(True):
        compiled = outcome(stream, sizes)
    return python, compiled


dates = st.sampled_from(["2016-12-06T17:14:21", "2016-13-06T17:14:21", "2016-12-06t17:14:21"])
fractions = st.sampled_from(["", ".", ".4", ".44", ".448", ".4481", ".448123456", ".448123456789"])
zones = st.sampled_from(["Z", "z", "+05:30", "-00:00", "", "+0530", "+05:3"])
characters = st.sampled_from(
    ["a", " ", '"', "\\", "n", "\n", "\r", "\t", "\x00", "\x7f", "é", "\u2028", "😀", "}", "{"]
)


@st.composite
def rawValues(draw: Any) -> str:
    """
    The inside of a JSON string: escaped as C{json.dumps} does, or with
    control characters raw (which the protocol accepts), and often with
    the final C{\\n} escape the Go client writes.
    """
    text = "".join(draw(st.lists(characters, max_size=12)))
    if draw(st.booleans()):
        body = json.dumps(text, ensure_ascii=draw(st.booleans()))[1:-1]
    else:
        body = text.replace("\\", "\\\\").replace('"', '\\"')
    return body + draw(st.sampled_from(["", "\\n", "\\r\\n", "\n", "\r\n", "\\"]))


@st.composite
def goStreams(draw: Any) -> bytes:
    """
    A topic, then records of the Go client's shape and near misses: times
    of every form, texts with and without escapes, long ones, other shapes
    between them, whitespace or nothing between.
    """
    stream = TOPIC
    for _ in range(draw(st.integers(0, 12))):
        time = draw(dates) + draw(fractions) + draw(zones)
        raw = draw(rawValues())
        if draw(st.integers(0, 9)) == 0:
            raw += "x" * draw(st.integers(100, 250))
        shape = draw(st.integers(0, 9))
        members = [f'"time":"{time}"', f'"raw":"{raw}"']
        if shape == 0:
            members.reverse()
        elif shape == 1:
            members = [member.replace(":", ": ", 1) for member in members]
        elif shape == 2:
            members.append('"x":1')
        record = "{" + ",".join(members) + "}"
        stream += draw(st.sampled_from([b"", b"", b"\n", b" "])) + record.encode(
            "utf-8", "surrogatepass"
        )
    return stream


stamps5424 = st.sampled_from(
    [
        "2016-12-06T17:14:21Z",
        "2016-12-06T17:14:21.4Z",
        "2016-12-06T17:14:21.448Z",
        "2016-12-06T17:14:21.448123+05:30",
        "2016-12-06T17:14:21.449123-00:00",
        "2016-12-06T17:14:21.44912x-00:00",
        "2016-13-06T17:14:21.448Z",
        "2016-12-06T17:14:21.448123456Z",
        "-",
    ]
)
headers5424 = st.sampled_from(
    [
        "<14>1 {} host app proc - - ",
        "<14>1 {} host app proc - - ",
        "<11>1 {} host app 42 - - ",
        "<14>1 {} other app proc - - ",
        "<199>1 {} host app proc - - ",
        '<14>1 {} host app proc id [x@1 a="b"] ',
        "<14>1 {} host app proc - -",
    ]
)
messages = st.lists(
    st.sampled_from(["a", " ", "é", "\ufeff", "\r", "\n", "\x00", "xyz"]), max_size=8
)


@st.composite
def octetStreams(draw: Any) -> bytes:
    """
    Octet-counted syslog frames, mostly of one header with timestamps that
    change, and near misses: other headers, structured data, bad counts,
    a byte order mark, line ends, frames over the longest line.
    """
    stream = b""
    for _ in range(draw(st.integers(0, 14))):
        header = draw(headers5424).format(draw(stamps5424))
        body = "".join(draw(messages))
        if draw(st.integers(0, 5)) == 0:
            body = "\ufeff" + body
        if draw(st.integers(0, 9)) == 0:
            body += "y" * draw(st.integers(150, 260))
        frame = (header + body).encode("utf-8")
        count = draw(st.sampled_from([b"%d" % len(frame)] * 8 + [b"%d" % (len(frame) + 1), b"x"]))
        stream += count + b" " + frame
    return stream


class CompiledTests(SynchronousTestCase):
    """
    The compiled decoder against the Python loop.
    """

    def setUp(self) -> None:
        if speedups.goRecords is None or speedups.octetFrames is None:
            if os.environ.get("CI"):
                self.fail("the compiled fast paths were not built (pip install . builds them)")
            raise SkipTest("the compiled fast paths are not built here")

    def test_goRecords(self) -> None:
        """
        Records of the Go client's shape, as it writes them, come out of
        the compiled decoder as out of the Python loop: times to the
        millisecond in UTC, texts less their final newline.
        """
        stream = TOPIC + b"".join(
            b'{"time":"2016-12-06T17:14:21.%03d123456-05:00","raw":"line %d\\n"}' % (i, i)
            for i in range(600)
        )
        python, compiled = both(stream, [len(stream)])
        self.assertEqual(compiled, python)
        self.assertEqual(len(compiled[0]), 600)
        self.assertEqual(compiled[0][5], ("2016-12-06T22:14:21.005", "line 5", None))

    def test_badTimeCountedEach(self) -> None:
        """
        A time of the right shape that is not a date (month 13) is stamped
        with the receive time and counted for every record that has it, as
        the Python loop counts it.
        """
        record = b'{"time":"2016-13-06T17:14:21.448Z","raw":"x"}'
        stream = TOPIC + record * 3 + b'{"time":"2016-12-06T17:14:21.448Z","raw":"y"}'
        seen = []
        for compiled in (False, True):
            with decoder(compiled):
                broker, factory = setUp()
                publisher = Publisher(factory)
                publisher.feed(stream, [len(stream)])
                seen.append((publisher.protocol.parser.badTimes, records(broker)))
        self.assertEqual(seen[1], seen[0])
        self.assertEqual(seen[1][0], 3)
        self.assertEqual(len(seen[1][1]), 4)

    def test_wideCharacters(self) -> None:
        """
        Reads holding characters outside Latin-1 (stored two or four bytes
        wide) decode the same.
        """
        stream = (
            TOPIC
            + (
                '{"time":"2016-12-06T17:14:21Z","raw":"é"}'
                '{"time":"2016-12-06T17:14:21Z","raw":"\u2028 wide\\n"}'
                '{"time":"2016-12-06T17:14:21Z","raw":"😀 wider"}'
            ).encode()
        )
        python, compiled = both(stream, [len(stream)])
        self.assertEqual(compiled, python)
        self.assertEqual([text for _, text, _ in compiled[0]], ["é", "\u2028 wide", "😀 wider"])

    @COMPARE
    @given(octetStreams(), chunkSizes)
    def test_syslogSameAsPython(self, stream: bytes, sizes: list[int]) -> None:
        """
        Any stream of octet-counted frames, split into any reads, publishes
        the same records, to the same topics, and writes back the same.
        """
        for reads in (sizes, [len(stream)]):
            python, compiled = both(stream, reads)
            self.assertEqual(compiled, python)

    def test_syslogRun(self) -> None:
        """
        Frames of one header with changing timestamps, as a busy sender
        writes them, come out the same, stamped to the millisecond in UTC.
        """
        frames = [
            b"<14>1 2016-12-06T17:14:21.%06dZ host app proc - - line %d\n" % (i * 997, i)
            for i in range(600)
        ]
        stream = b"".join(b"%d %s" % (len(frame), frame) for frame in frames)
        python, compiled = both(stream, [len(stream)])
        self.assertEqual(compiled, python)
        self.assertEqual(len(compiled[0]), 600)
        self.assertEqual(compiled[0][1], ("2016-12-06T17:14:21.000", "line 1", "info"))

    @COMPARE
    @given(goStreams(), chunkSizes)
    def test_sameAsPython(self, stream: bytes, sizes: list[int]) -> None:
        """
        Any stream of such records and near misses, split into any reads,
        publishes the same records and writes back the same bytes.
        """
        python, compiled = both(stream, sizes)
        self.assertEqual(compiled, python)
        self.assertEqual(both(stream, [len(stream)])[1], compiled)


stampTexts = st.sampled_from(
    ["2016-12-06T22:14:21.448", "2016-12-06T22:14:21.447", "2017-01-01T00:00:00.000", "é" * 23]
    + ["2016-12-06T22:14:21", "2016-12-06T22:14:21.4480"]
)
packTexts = st.lists(st.sampled_from(["a", " ", "\x00", "\n", "é", "😀", "\ud800", "-", "x" * 40]))
usualStamps = ["2016-12-06T22:14:21.448", "2016-12-06T22:14:21.447", "2017-01-01T00:00:00.000"]
batches = st.lists(
    st.tuples(
        stampTexts,
        packTexts.map("".join),
        st.sampled_from([None] * 6 + ["error", "info"]),
    ),
    min_size=1,
    max_size=8,
) | st.lists(
    # The usual batch: ASCII, no NUL, no level.
    st.tuples(
        st.sampled_from(usualStamps),
        st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=50),
        st.none(),
    ),
    min_size=1,
    max_size=8,
)


class FlatPackTests(SynchronousTestCase):
    """
    The store's compiled flat packing against L{packRecords}.
    """

    def setUp(self) -> None:
        if speedups.flatPack is None:
            if os.environ.get("CI"):
                self.fail("the compiled fast paths were not built (pip install . builds them)")
            raise SkipTest("the compiled fast paths are not built here")

    @COMPARE
    @given(batches)
    def test_sameAsPython(self, batch: list[tuple[str, str, str | None]]) -> None:
        """
        A batch the compiled packing takes packs to the same value, oldest
        and newest as in Python, and reads back; it takes every batch of
        ASCII timestamps of the right length and ASCII texts without a NUL
        or a level.
        """
        assert speedups.flatPack is not None
        records: list[Record] = list(batch)
        packed = speedups.flatPack(records, STAMP)
        usual = all(
            stamp.isascii() and len(stamp) == STAMP and text.isascii() and "\x00" not in text
            for stamp, text, level in records
        ) and not any(level for _, _, level in records)
        self.assertEqual(packed is not None, usual, records)
        if packed is not None:
            self.assertEqual(packed, packRecords(records))
            self.assertEqual(unpack(packed[0], len(records)), records)
        self.assertEqual(pack(records), packRecords(records))

    def test_oldestAndNewest(self) -> None:
        """
        Records of several times give the oldest and the newest, wherever
        they are in the batch.
        """
        assert speedups.flatPack is not None
        late, early, latest = usualStamps[0], usualStamps[1], usualStamps[2]
        records: list[Record] = [(late, "a", None), (latest, "b", None), (early, "c", None)]
        packed = speedups.flatPack(records, STAMP)
        self.assertEqual(packed[1:], (early, latest))
        self.assertEqual(packed[0], ("F" + late + latest + early + "---a\x00b\x00c").encode())

    def test_notTaken(self) -> None:
        """
        An empty batch, or one whose records are not plain tuples of
        strings, is left to Python.
        """
        assert speedups.flatPack is not None
        self.assertIsNone(speedups.flatPack([], STAMP))
        self.assertIsNone(speedups.flatPack([["2016-12-06T22:14:21.448", "a", None]], STAMP))
        self.assertIsNone(speedups.flatPack([("2016-12-06T22:14:21.448", b"a", None)], STAMP))
