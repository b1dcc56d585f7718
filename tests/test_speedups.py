"""
The compiled seed decoder (C{_logio_speedups}, built by C{pip install .})
publishes exactly what the Python loop it stands in for does, for records
of the Go client's shape and everything near it, however the stream is
split into reads.
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

from logio.ingest import seed
from logio.ingest.seed import SeedProtocol
from tests.test_fuzz_publish import Publisher, chunkSizes, outcome, records, setUp

TOPIC = b'{"app":"fuzz","proc":"p","host":"h"}'
COMPARE = settings(max_examples=300, deadline=None)


@contextmanager
def decoder(compiled: Any) -> Iterator[None]:
    """
    Seed publishers made inside use C{compiled} (L{None}: the Python loop).
    """
    saved = SeedProtocol.compiled
    SeedProtocol.compiled = compiled
    try:
        yield
    finally:
        SeedProtocol.compiled = saved


def both(stream: bytes, sizes: list[int]) -> tuple[Any, Any]:
    """
    What C{stream} publishes and writes back through the Python loop, and
    through the compiled decoder.
    """
    with decoder(None):
        python = outcome(stream, sizes)
    with decoder(seed.goRecords):
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


class CompiledTests(SynchronousTestCase):
    """
    The compiled decoder against the Python loop.
    """

    def setUp(self) -> None:
        if seed.goRecords is None:
            if os.environ.get("CI"):
                self.fail("the compiled seed decoder was not built (pip install . builds it)")
            raise SkipTest("the compiled seed decoder is not built here")

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
        for compiled in (None, seed.goRecords):
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
    @given(goStreams(), chunkSizes)
    def test_sameAsPython(self, stream: bytes, sizes: list[int]) -> None:
        """
        Any stream of such records and near misses, split into any reads,
        publishes the same records and writes back the same bytes.
        """
        python, compiled = both(stream, sizes)
        self.assertEqual(compiled, python)
        self.assertEqual(both(stream, [len(stream)])[1], compiled)
