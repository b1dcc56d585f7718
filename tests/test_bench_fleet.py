"""
Tests for the benchmark's fleet of small publishers (L{bench.fleet}): a line
it writes is the very line the other publishers write.

The benchmark needs its extra (numpy); without it these tests are skipped.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench.fleet import record_format
from bench.wire import RecordEncoder
from bench.workers import PubSpec

STAMP = b"2026-12-05T09:00:00.123456789+00:00"


class RecordFormatTests(SynchronousTestCase):
    """
    L{record_format} makes, line by line, what L{RecordEncoder} makes.
    """

    def test_sameBytes(self) -> None:
        """
        Seed JSON, text and NATS lines, of the usual width and others, are
        byte for byte the encoder's.
        """
        for proto in ("seed", "text", "nats"):
            for width in (99, 49, 1023):
                spec = PubSpec(proto, "bench", pub=42, proc="p007", width=width)
                form, stamped = record_format(spec)
                encoder = RecordEncoder(proto, spec.channel, spec.topic, width)
                seq, ts = 1234, 9876543210
                expected = encoder.encode([STAMP], 42, range(seq, seq + 1), [ts])
                line = form % ((STAMP, seq, ts) if stamped else (seq, ts))
                self.assertEqual(line, expected, (proto, width))

    def test_otherProtocolRefused(self) -> None:
        """
        A protocol the fleet does not speak is refused.
        """
        self.assertRaises(ValueError, record_format, PubSpec("redis", "bench"))
