"""
Fuzz tests for the publisher port: random bytes and damaged valid streams,
split into random reads, through the sniffing protocol of
L{logio.ingest.sniff.PublisherFactory} over a L{StringTransport}.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from logio.ingest import lines as linesModule
from logio.ingest.lines import LineSplitter
from logio.ingest.sniff import PublisherFactory
from logio.topic import Record, Topic
from tests.support.fakes import FakeBroker, publisherFactory

MAX_LINE = 200
FUZZ = settings(max_examples=200, deadline=None)
REFERENCE = Topic("reference", "web", "h")
REFERENCE_STREAM = (
    b'{"app":"reference","proc":"web","host":"h"}'
    b'{"time":"2016-12-06T17:14:21.448123-05:00","raw":"one\\n"}{"raw":"two"}'
)
REFERENCE_RECORDS = [
    ("2016-12-06T22:14:21.448", "one", None),
    ("2017-07-14T02:40:00.500", "two", None),
]


class Publisher:
    """
    One connection of C{factory}'s, fed in reads of the given sizes.
    """

    def __init__(self, factory: PublisherFactory) -> None:
        self.protocol: Any = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1234))
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def feed(self, stream: bytes, sizes: list[int]) -> None:
        position = 0
        index = 0
        while position < len(stream):
            size = sizes[index % len(sizes)] if sizes else len(stream)
            self.protocol.dataReceived(stream[position : position + size])
            position += size
            index += 1


def setUp() -> tuple[FakeBroker, PublisherFactory]:
    broker = FakeBroker()
    clock = Clock()
    clock.advance(1500000000.5)
    return broker, publisherFactory(broker, clock, maxLine=MAX_LINE)


def records(broker: FakeBroker, topic: Topic | None = None) -> list[Record]:
    """
    The records published, to C{topic} or to any other topic than
    L{REFERENCE}.
    """
    return [
        record
        for published, batch in broker.published
        for record in batch
        if (published == topic if topic is not None else published != REFERENCE)
    ]


def outcome(stream: bytes, sizes: list[int]) -> tuple[list[Record], bytes, bool]:
    """
    What C{stream} fed in reads of C{sizes} publishes and writes back.
    """
    broker, factory = setUp()
    publisher = Publisher(factory)
    publisher.feed(stream, sizes)
    publisher.protocol.readConnectionLost()
    publisher.protocol.connectionLost(connectionDone)
    return records(broker), publisher.transport.value(), publisher.transport.disconnecting


raws = st.text(max_size=60) | st.sampled_from(["", "\n", "a\r\n", 'q"uote\\', "x" * 300])
times = st.sampled_from([None, "2016-12-06T17:14:21.448123-05:00", "2016-12-06T22:14:21Z", "x"])


@st.composite
def seedStreams(draw: Any) -> tuple[bytes, list[int]]:
    """
    A valid seed stream, and the byte offset where each record ends.
    """
    stream = json.dumps({"app": "fuzz", "proc": "p", "host": "h"}, separators=(",", ":")).encode()
    ends = []
    for _ in range(draw(st.integers(0, 8))):
        record: dict[str, object] = {}
        time = draw(times)
        if time is not None:
            record["time"] = time
        record["raw"] = draw(raws)
        if draw(st.booleans()):
            record = dict(reversed(list(record.items())))
        separator = draw(st.sampled_from([b"", b"\n", b" \t"]))
        stream += separator + json.dumps(record, ensure_ascii=draw(st.booleans())).encode()
        ends.append(len(stream))
    return stream, ends


@st.composite
def textStreams(draw: Any) -> tuple[bytes, list[int]]:
    """
    A valid text stream, and the byte offset where each line ends.
    """
    stream = b"app=fuzz&proc=p&host=h\n"
    ends = []
    for _ in range(draw(st.integers(0, 8))):
        line = draw(st.text(max_size=60).map(lambda t: t.replace("\n", " ").replace("\r", " ")))
        stream += line.encode() + b"\n"
        ends.append(len(stream))
    return stream, ends


streams = seedStreams() | textStreams()
chunkSizes = st.lists(st.integers(1, 64), min_size=1, max_size=8)


@st.composite
def damaged(draw: Any) -> tuple[bytes, bytes, list[int], int]:
    """
    A valid stream, the same stream damaged from some offset on (a byte
    flipped, bytes inserted, or the rest cut off), the record ends of the
    valid stream, and the offset of the damage.
    """
    stream, ends = draw(streams)
    at = draw(st.integers(1, len(stream)))
    kind = draw(st.sampled_from(["flip", "insert", "cut"]))
    if kind == "flip" and at < len(stream):
        mutated = stream[:at] + bytes([stream[at] ^ draw(st.integers(1, 255))]) + stream[at + 1 :]
    elif kind == "insert":
        mutated = stream[:at] + draw(st.binary(min_size=1, max_size=20)) + stream[at:]
    else:
        mutated = stream[:at]
    return stream, mutated, ends, at


class FuzzTests(SynchronousTestCase):
    """
    No input makes a publisher protocol raise, lose what came before the
    damage, depend on how it was split, or disturb another publisher.
    """

    @FUZZ
    @given(st.binary(max_size=400), chunkSizes)
    def test_randomBytes(self, stream: bytes, sizes: list[int]) -> None:
        """
        Random bytes in random reads never raise, and a publisher beside
        them on the same broker publishes all it sent.
        """
        broker, factory = setUp()
        reference = Publisher(factory)
        fuzzed = Publisher(factory)
        fuzzed.feed(stream, sizes)
        reference.feed(REFERENCE_STREAM, sizes)
        fuzzed.protocol.readConnectionLost()
        fuzzed.protocol.connectionLost(connectionDone)
        self.assertEqual(records(broker, REFERENCE), REFERENCE_RECORDS)
        self.assertEqual(reference.transport.value(), b"")
        self.assertEqual(broker.stats.publishers, 1)
        self.assertLessEqual(broker.stats.refusals["publisher"], 1)

    @FUZZ
    @given(damaged(), chunkSizes)
    def test_damagedStream(
        self, case: tuple[bytes, bytes, list[int], int], sizes: list[int]
    ) -> None:
        """
        A valid stream damaged at some offset, in random reads, never
        raises and publishes every record that ended before the damage;
        another publisher on the same broker is untouched.
        """
        stream, mutated, ends, at = case
        valid, _, _ = outcome(stream, [len(stream)])
        before = sum(1 for end in ends if end <= at)
        broker, factory = setUp()
        reference = Publisher(factory)
        fuzzed = Publisher(factory)
        reference.feed(REFERENCE_STREAM[:50], sizes)
        fuzzed.feed(mutated, sizes)
        reference.feed(REFERENCE_STREAM[50:], sizes)
        fuzzed.protocol.readConnectionLost()
        fuzzed.protocol.connectionLost(connectionDone)
        self.assertEqual(records(broker)[:before], valid[:before])
        self.assertEqual(records(broker, REFERENCE), REFERENCE_RECORDS)
        self.assertEqual(broker.stats.publishers, 1)

    @FUZZ
    @given(streams, chunkSizes)
    def test_chunkingInvariance(self, case: tuple[bytes, list[int]], sizes: list[int]) -> None:
        """
        A valid stream publishes the same records, and writes back nothing,
        however it is split into reads.
        """
        stream, ends = case
        whole = outcome(stream, [len(stream)])
        self.assertEqual(outcome(stream, sizes), whole)
        self.assertEqual(len(whole[0]), len(ends))
        self.assertEqual(whole[1:], (b"", True))


class SplitterTests(SynchronousTestCase):
    """
    L{LineSplitter} splits long lines (searched for one at a time) and
    short ones (split at once) alike.
    """

    @FUZZ
    @given(
        st.lists(st.binary(max_size=700).map(lambda line: line.replace(b"\n", b"")), max_size=12),
        st.sampled_from([b"\n", b"\r\n"]),
        st.lists(st.integers(1, 900), min_size=1, max_size=8),
        st.integers(1, 800),
    )
    def test_longAndShortAlike(
        self, lines: list[bytes], newline: bytes, sizes: list[int], maxLine: int
    ) -> None:
        """
        However a stream is read, each way of splitting hands over the same
        lines and counts the same bytes cut off; without cuts or CRs of
        their own, the lines sent.
        """
        stream = b"".join(line + newline for line in lines)
        results = []
        for longLine in (0, len(stream) + 1):
            self.patch(linesModule, "LONG_LINE", longLine)
            got: list[bytes] = []
            splitter = LineSplitter(maxLine, got.extend)
            position = index = 0
            while position < len(stream):
                size = sizes[index % len(sizes)]
                splitter.feed(stream[position : position + size])
                position += size
                index += 1
            splitter.end()
            results.append((got, splitter.discarded))
        self.assertEqual(results[0], results[1])
        if all(len(line) <= maxLine and b"\r" not in line for line in lines):
            self.assertEqual(results[0], (lines, 0))
