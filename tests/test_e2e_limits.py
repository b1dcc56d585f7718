"""
End-to-end tests of the subscriber port's bounds against the real
C{twistd -n logio}: memory under amplifying input, limits and their
refusals, and clients that half-close.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from random import Random

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.processes import procStatus
from tests.support.server import Server, get, metrics
from tests.support.waiting import TIMEOUT, waitFor


def rss(server: Server) -> int:
    """
    The server process's resident memory, in bytes.
    """
    return procStatus(server.process.pid)["VmRSS"] * 1024


def stalledSubscriber(server: Server, query: str) -> socket.socket:
    """
    A subscriber that sends its request and never reads.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.subscribePort))
    sock.sendall(f"GET /?{query} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    return sock


class MemoryTests(SynchronousTestCase):
    """
    What the server holds for subscribers stays within their bounds.
    """

    def amplify(self, server: Server, round: int = 1) -> list[socket.socket]:
        """
        Connect twenty subscribers that never read (round C{round} of
        them), then publish 64 KiB of empty lines with 256-character topic
        fields (about 52 MB of output for each), and wait until the server
        has read them all.

        @return: The subscribers' sockets.
        """
        subscribers = [stalledSubscriber(server, "") for _ in range(20)]
        for sock in subscribers:
            self.addCleanup(sock.close)
        server.subscribed(20 * round)
        field = "x" * 256
        publisher = server.publish(
            f"app={field}&proc={field}&host={field}\n".encode() + b"\n" * 65536
        )
        self.addCleanup(publisher.close)
        key = ("logio_records_in_total", (("protocol", "text"),))
        waitFor(lambda: metrics(server)[key] >= 65536 * round, what="the empty lines to be read")
        return subscribers

    def assertGrewLess(self, server: Server, before: int, limit: int) -> None:
        growth = rss(server) - before
        self.assertLess(growth, limit, f"RSS grew by {growth / 2**20:.0f} MiB")

    def test_amplification(self) -> None:
        """
        Twenty subscribers that never read an amplifying publisher hold at
        most their bound each (4 MiB), not the whole output.
        """
        server = Server(self)
        before = rss(server)
        self.amplify(server)
        dropped = metrics(server)[("logio_lines_dropped_total", (("format", "text"),))]
        # Each keeps about 5,300 lines of 800 bytes in its bound, and what
        # the kernel's socket buffers take (not bounded here: up to a few
        # MiB, by the machine's settings); the rest of the 65,536 is dropped.
        self.assertGreater(dropped, 20 * 55000)
        # Before the bound, the twenty transports held over 1 GB.
        self.assertGrewLess(server, before, 300 * 1024 * 1024)

    def test_serverWideBound(self) -> None:
        """
        With C{--max-queued-bytes} at 8 MiB, twenty stalled subscribers of
        the same input hold about that together, not 4 MiB each: the
        stalled ones holding the most are disconnected.
        """
        server = Server(self, "--max-queued-bytes", str(8 << 20))
        before = rss(server)
        self.amplify(server)
        server.waitForLog("disconnecting one that is not reading")
        # Without the server-wide bound they held about 96 MiB.
        self.assertGrewLess(server, before, 64 * 1024 * 1024)

    def test_retention(self) -> None:
        """
        Three rounds of twenty stalled subscribers that leave: what they
        held is freed each time (no reference cycles keep it), so memory
        does not add up (it reached 1.5 GB with nothing connected).
        """
        server = Server(self)
        before = rss(server)
        for round in range(1, 4):
            for sock in self.amplify(server, round):
                sock.close()
            server.waitForLog("(0 subscribers)", round)
        self.assertGrewLess(server, before, 300 * 1024 * 1024)


class LimitTests(SynchronousTestCase):
    """
    Limits of the real server's subscriber port.
    """

    def test_maxSubscribers(self) -> None:
        """
        Past C{--max-subscribers} a subscription gets 503 (seen with curl).
        """
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed")
        server = Server(self, "--max-subscribers", "2")
        streams = [server.subscribe(), server.subscribe()]
        for stream in streams:
            self.addCleanup(stream.close)
        server.subscribed(2)
        result = subprocess.run(
            [curl, "-sS", "-w", "%{http_code}", f"http://127.0.0.1:{server.subscribePort}/"],
            capture_output=True,
            timeout=TIMEOUT,
        )
        self.assertTrue(result.stdout.endswith(b"503"), result.stdout)
        self.assertIn(b"too many subscribers (2)", result.stdout)
        server.waitForLog("Refused a subscriber: too many subscribers")

    def test_maxLogFilters(self) -> None:
        """
        Past C{--max-log-filters} distinct patterns a new one gets 503; a
        pattern already in use is shared and accepted.
        """
        server = Server(self, "--max-log-filters", "1")
        first = server.subscribe("log=ERROR")
        self.addCleanup(first.close)
        shared = server.subscribe("log=ERROR")
        self.addCleanup(shared.close)
        self.assertEqual((first.status, shared.status), (200, 200))
        refused = server.subscribe("log=WARN")
        self.assertEqual(refused.status, 503)
        self.assertIn(
            b"too many distinct log= patterns (1)", refused.readUntil(lambda b: b.endswith(b"\n"))
        )

    def test_costlyPattern(self) -> None:
        """
        A pattern too costly to match is a 400 saying so.
        """
        server = Server(self)
        stream = server.subscribe("log=%28.%7B1%2C100%7D%29%7B10%7Dx")
        self.assertEqual(stream.status, 400)
        self.assertIn(b"too costly to match", stream.readUntil(lambda b: b.endswith(b"\n")))

    def test_costlyAtRunTime(self) -> None:
        """
        A pattern that passes the costing but makes RE2 give up its DFA on
        the records published (tens of milliseconds per 64 KiB) has its
        subscribers cut off and is refused afterwards; others go on.
        """
        server = Server(self)
        pattern = "log=%5Bab%5D*a%5Bab%5D%7B90%7Dc"
        costly = server.subscribe(pattern)
        other = server.subscribe("app=ab")
        server.subscribed(2)
        # Random a and b: RE2's DFA for this pattern would need 2**90 states.
        rnd = Random(1)
        text = bytes(rnd.choice(b"ab") for _ in range(60000))
        publisher = server.publish(b"app=ab\n" + text + b"\nafter\n")
        self.addCleanup(publisher.close)
        self.assertEqual(len(other.lines(2)), 2)
        server.waitForLog("of CPU on one batch")
        # Cut off: the server aborts the connection.
        self.assertRaises((EOFError, ConnectionResetError), costly.readUntil, lambda b: False)
        refused = server.subscribe(pattern)
        self.assertEqual(refused.status, 400)
        self.assertIn(b"too costly to match", refused.readUntil(lambda b: b.endswith(b"\n")))

    def test_bodyTooLarge(self) -> None:
        """
        A request with a body over 64 KiB gets 413 at once.
        """
        server = Server(self)
        sock = socket.create_connection(("127.0.0.1", server.subscribePort), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000\r\n\r\n" + b"x" * 1000
        )
        reply = sock.recv(1000)
        self.assertTrue(reply.startswith(b"HTTP/1.1 413 "), reply)

    def test_slowRequest(self) -> None:
        """
        A request whose headers trickle in for more than 10 s gets 408 and
        is closed.
        """
        server = Server(self)
        sock = socket.create_connection(("127.0.0.1", server.subscribePort), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(b"GET / HTTP/1.1\r\n")
        reply = b""
        sock.settimeout(1)
        for _ in range(int(TIMEOUT)):
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                reply += sock.recv(1000)
            except TimeoutError:
                continue
            except OSError:
                break
            if reply:
                break
        self.assertTrue(reply.startswith(b"HTTP/1.1 408 "), reply)


class HalfCloseTests(SynchronousTestCase):
    """
    Clients that half-close after their request, as C{nc -N} does.
    """

    def test_ncHealthz(self) -> None:
        """
        C{nc -N} (which shuts down its sending side at the end of input)
        gets C{/healthz}'s answer, and the connection ends.
        """
        nc = shutil.which("nc")
        if nc is None:
            raise SkipTest("nc is not installed")
        server = Server(self)
        result = subprocess.run(
            [nc, "-N", "127.0.0.1", str(server.subscribePort)],
            input=b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
            capture_output=True,
            timeout=TIMEOUT,
        )
        self.assertTrue(result.stdout.startswith(b"HTTP/1.1 200 "), result.stdout)
        self.assertTrue(result.stdout.endswith(b"ok\n"), result.stdout)

    def test_halfClosedSubscription(self) -> None:
        """
        A subscriber that half-closes after its request still gets its lines.
        """
        server = Server(self)
        sock = socket.create_connection(("127.0.0.1", server.subscribePort), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /?app=half HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        server.subscribed(1)
        server.publish(b"app=half\nstill here\n").close()
        received = b""
        while b"still here" not in received:
            data = sock.recv(65536)
            self.assertNotEqual(data, b"", received)
            received += data
        self.assertIn(b"half[-] 127.0.0.1: still here", received)
        self.assertEqual(get(server, "/healthz").status, 200)
