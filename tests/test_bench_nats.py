"""
Tests for the benchmark's NATS subscriber (L{bench.nats}): it counts every
message nats-server delivers exactly, however the stream is cut into reads,
and answers the server's PINGs.

The benchmark needs its extra (numpy); without it these tests are skipped.
"""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from bench.nats import PONG, NatsMessages
from bench.wire import RecordEncoder

SUBJECT = b"bench.p.h"


def serverStream(count: int, pings: int) -> bytes:
    """
    What nats-server sends a subscriber to C{bench.>}: its INFO, the PONG
    that says the subscription is in place, then C{count} messages of
    publisher 3 (a benchmark line each) with C{pings} PINGs among them.
    """
    encoder = RecordEncoder("nats", SUBJECT)
    parts = [b'INFO {"server_id":"x"} \r\n', PONG]
    every = max(1, count // (pings + 1))
    for seq in range(count):
        command = encoder.encode([b""], 3, range(seq, seq + 1), [seq])
        _, _, rest = command.partition(b"\r\n")
        payload = rest[: -len(b"\r\n")]
        parts.append(b"MSG %s 1 %d\r\n%s\r\n" % (SUBJECT, len(payload), payload))
        if pings and seq % every == every - 1 and parts.count(b"PING\r\n") < pings:
            parts.append(b"PING\r\n")
    return b"".join(parts)


def feedInPieces(reader: NatsMessages, stream: bytes, sizes: list[int]) -> None:
    """
    Feed C{stream} to C{reader} cut into reads of the given sizes in turn.
    """
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    position = 0
    turn = 0
    while position < len(stream):
        piece = stream[position : position + sizes[turn % len(sizes)]]
        buf[: len(piece)] = piece
        reader.feed(buf, view, len(piece), 0)
        position += len(piece)
        turn += 1


def feedAt(reader: NatsMessages, data: bytes, now_ns: int) -> None:
    """
    Feed C{data} to C{reader} as one read received at C{now_ns}.
    """
    buf = bytearray(data)
    reader.feed(buf, memoryview(buf), len(data), now_ns)


class NatsMessagesTests(SynchronousTestCase):
    """
    L{NatsMessages} counts and parses what nats-server delivers.
    """

    def test_publishFraming(self) -> None:
        """
        A NATS publisher's record is a C{PUB} whose byte count is its
        payload's: the benchmark line with its newline.
        """
        command = RecordEncoder("nats", SUBJECT).encode([b""], 7, range(1), [0])
        head, _, rest = command.partition(b"\r\n")
        self.assertEqual(head, b"PUB bench.p.h 100")
        self.assertEqual(len(rest), 100 + 2)
        self.assertTrue(rest.endswith(b"\n\r\n"))

    def test_countsEveryMessageHoweverCut(self) -> None:
        """
        Counting, every message is counted once and every PING gets a PONG,
        whatever the reads' sizes (a marker cut across two reads included).
        """
        stream = serverStream(500, pings=7)
        randomSizes = random.Random(7)
        cuts = [[1], [2], [3], [5], [7], [64], [len(stream)]]
        cuts += [[randomSizes.randint(1, 300) for _ in range(50)] for _ in range(20)]
        for sizes in cuts:
            reader = NatsMessages("bench.>")
            feedInPieces(reader, stream, sizes)
            self.assertEqual(reader.status, 200)
            self.assertEqual(reader.result({3: 500})["lines"], 500, sizes[:3])
            self.assertEqual(reader.reply, PONG * 7, sizes[:3])

    def test_parsesEveryMessageHoweverCut(self) -> None:
        """
        Parsing, every message's fields are read: none missing, none out of
        order, none unparsed, whatever the reads' sizes.
        """
        stream = serverStream(300, pings=3)
        for sizes in ([1], [7], [131], [4096], [len(stream)]):
            reader = NatsMessages("bench.>", parse=True)
            feedInPieces(reader, stream, sizes)
            result = reader.result({3: 300})
            self.assertEqual(
                (result["lines"], result["missing"], result["reordered"], result["unparsed"]),
                (300, 0, 0, 0),
                sizes,
            )
            self.assertEqual(reader.reply, PONG * 3)

    def test_parsingPhasesSpread(self) -> None:
        """
        Connections whose messages arrive at the same moments parse them at
        moments of their own, each within its interval of the first: a
        worker of many connections started together does not parse all of
        theirs at once, holding up its reads for the whole time.
        """
        stream = serverStream(40, pings=0)
        head = stream.index(b"MSG")
        interval = 10
        firstParse = []
        for _ in range(50):
            reader = NatsMessages("bench.>", parse=True)
            reader.flush_ns = interval
            feedAt(reader, stream[:head], 1)
            messages = [m for m in stream[head:].split(b"MSG ") if m]
            for tick, message in enumerate(messages, start=1):
                feedAt(reader, b"MSG " + message, tick)
                if not reader.pending:
                    firstParse.append(tick)
                    break
            self.assertEqual(reader.pending, 0)
        # The first message came at tick 1; each parses once more than the
        # interval has passed since its phase began.
        self.assertTrue(all(1 <= tick <= interval + 2 for tick in firstParse), firstParse)
        self.assertGreater(len(set(firstParse)), 1, firstParse)

    def test_missingCounted(self) -> None:
        """
        Parsing, a message that never came is counted missing.
        """
        stream = serverStream(10, pings=0)
        cut = stream.index(b"MSG", stream.index(b"seq=0000000004"))
        later = stream.index(b"MSG", cut + 1)
        reader = NatsMessages("bench.>", parse=True)
        feedInPieces(reader, stream[:cut] + stream[later:], [1000])
        result = reader.result({3: 10})
        self.assertEqual((result["lines"], result["missing"]), (9, 1))

    def test_errorKept(self) -> None:
        """
        An C{-ERR} line of the server's is kept to be reported.
        """
        stream = serverStream(3, pings=0) + b"-ERR 'Slow Consumer Detected'\r\n"
        reader = NatsMessages("bench.>")
        feedInPieces(reader, stream, [1000])
        self.assertEqual(reader.result({})["errors"], ["'Slow Consumer Detected'"])
