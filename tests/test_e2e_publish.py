"""
End-to-end tests of the publisher port against the installed C{twistd -n
logio}: its limits, how a stream may end, over-long seed records, and a
shutdown under load that loses nothing that was read.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.support.http import dechunk
from tests.support.server import Server
from tests.support.waiting import TIMEOUT, waitFor

_RECORDS_READ = re.compile(r"Stopped reading (\d+) publishers; (\d+) records read since start-up")
_FINAL_CHUNK = b"\r\n0\r\n\r\n"


def readAll(sock: socket.socket) -> bytes:
    """
    Everything C{sock} receives until the peer closes it.
    """
    sock.settimeout(TIMEOUT)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


class PublisherEndToEndTests(SynchronousTestCase):
    """
    The publisher port of a real server.
    """

    def test_limits(self) -> None:
        """
        A publisher that sends no topic within C{--topic-timeout} gets an
        error line and is closed; one beyond C{--max-publishers} gets an
        error line at once; the refusals are logged.
        """
        server = Server(self, "--max-publishers", "2", "--topic-timeout", "1")
        first = server.publish(b"app=first\n")
        self.addCleanup(first.close)
        silent = server.publish(b"")
        self.addCleanup(silent.close)
        started = time.monotonic()
        self.assertEqual(readAll(silent), b"error: no topic within 1 s\n")
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        second = server.publish(b"app=second\n")
        self.addCleanup(second.close)
        third = server.publish(b"")
        self.addCleanup(third.close)
        self.assertEqual(readAll(third), b"error: too many publishers (2)\n")
        # The log reaches the test through a pipe: wait for it.
        server.waitForLog("Refused a publisher: no topic in time: 127.0.0.1: ")
        server.waitForLog("Refused a publisher: too many publishers: 127.0.0.1: ")

    def test_streamEnds(self) -> None:
        """
        A seed record longer than C{--max-line} is cut and delivered, and
        the stream goes on; a publisher that half-closes inside a value
        gets an error line, and what it sent before is delivered.
        """
        server = Server(self, "--max-line", "100")
        stream = server.subscribe("app=cut")
        server.subscribed(1)
        publisher = server.publish(
            b'{"app":"cut","proc":"p","host":"h"}'
            b'{"time":"2016-12-06T17:14:21.448123-05:00","raw":"' + b"y" * 200 + b'\\n"}'
            b'{"raw":"after"}{"raw":"never ends'
        )
        self.addCleanup(publisher.close)
        publisher.shutdown(socket.SHUT_WR)
        self.assertEqual(
            readAll(publisher), b"error: the stream ended inside a JSON value (at character 322)\n"
        )
        lines = stream.lines(2)
        self.assertEqual(
            lines[0], b"2016-12-06T22:14:21.448 cut[p] h: " + b"y" * 50 + b" [truncated]"
        )
        self.assertTrue(lines[1].endswith(b" cut[p] h: after"), lines[1])
        server.waitForLog("Refused a publisher: stream ended inside a JSON value")
        server.waitForLog("1 records longer than 100 characters were cut, 154 characters cut off")

    def test_sigtermLosesNothing(self) -> None:
        """
        A publisher sending as fast as it can while the server gets SIGTERM:
        every record the server says it read is delivered, in order, to a
        subscriber that reads, whose stream then ends with the final chunk;
        and of those records a stalled subscriber got some and the log
        counts the rest as not delivered.
        """
        server = Server(self, "--buffer", "1000000", "--buffer-bytes", "268435456")
        stalled = socket.socket()
        self.addCleanup(stalled.close)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.subscribePort))
        stalled.sendall(b"GET /?app=flood HTTP/1.1\r\nHost: localhost\r\n\r\n")
        subscriber = socket.create_connection(("127.0.0.1", server.subscribePort), TIMEOUT)
        self.addCleanup(subscriber.close)
        subscriber.sendall(b"GET /?app=flood HTTP/1.1\r\nHost: localhost\r\n\r\n")
        server.subscribed(2)
        received: list[bytes] = []
        size = [0]

        def read() -> None:
            subscriber.settimeout(60)
            tail = b""
            while chunk := subscriber.recv(1 << 20):
                received.append(chunk)
                size[0] += len(chunk)
                tail = (tail + chunk)[-len(_FINAL_CHUNK) :]
                if tail == _FINAL_CHUNK:
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        publisher = server.publish(b"app=flood\n")
        self.addCleanup(publisher.close)
        publisher.settimeout(60)

        def flood() -> None:
            number = 0
            try:
                while True:
                    publisher.sendall(b"".join(b"%09d\n" % n for n in range(number, number + 1000)))
                    number += 1000
            except OSError:
                return

        threading.Thread(target=flood, daemon=True).start()
        # The subscriber has had about 1 MB: the publisher is in full flow.
        waitFor(lambda: size[0] > 1 << 20, timeout=60, what="a megabyte delivered")
        server.process.send_signal(signal.SIGTERM)
        reader.join(60)
        self.assertFalse(reader.is_alive(), "the stream did not end")
        self.assertEqual(server.stop(), -signal.SIGTERM)
        raw = b"".join(received)
        self.assertTrue(raw.endswith(_FINAL_CHUNK))
        body, ended = dechunk(raw.split(b"\r\n\r\n", 1)[1])
        self.assertTrue(ended)
        texts = re.findall(rb" flood\[-\] \S+: (\d*)\n", body)
        found = _RECORDS_READ.search(server.log())
        assert found is not None, server.log()
        self.assertEqual(found.group(1), "1")
        self.assertGreater(len(texts), 0)
        self.assertEqual(len(texts), int(found.group(2)))
        # Every line is a record, but the last: the server says it stops.
        self.assertEqual(body.count(b"\n"), len(texts) + 1)
        self.assertTrue(body.endswith(b": the server is shutting down\n"), body[-200:])
        # In order and without a gap; the last may be the start of a line
        # the publisher had not finished when the server stopped reading.
        expected = [b"%09d" % n for n in range(len(texts))]
        self.assertEqual(texts[:-1], expected[:-1])
        self.assertTrue(expected[-1].startswith(texts[-1]), texts[-1])
        # What the stalled subscriber's kernel buffers held reaches it now;
        # the log counts the rest: the lines of its queue, and the bytes of
        # output its transport held before (each line is at least 50 bytes).
        stalledLines = len(re.findall(rb" flood\[-\] \S+: \d*\n", readAll(stalled)))
        undelivered = re.search(
            r"(\d+) output lines could not be delivered, and (\d+) bytes of what was "
            r"written before \((\d+) ",
            server.log(),
        )
        assert undelivered is not None, server.log()
        lines, earlier, subscribers = map(int, undelivered.groups())
        # Kernel buffers may have taken all it had (then nothing is counted).
        self.assertEqual(subscribers, 1 if lines or earlier else 0)
        missing = len(texts) - stalledLines - lines
        self.assertGreaterEqual(missing, 0)
        self.assertLessEqual(missing, earlier // 50)
