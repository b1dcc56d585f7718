"""
End-to-end tests of the second hardening round, against C{twistd -n logio}:
dead subscribers released, ingest bodies bounded, heavy patterns and
pipelined requests that cannot stall the server.
"""

from __future__ import annotations

import http.client
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from functools import partial

from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import curl, procStatus
from tests.support.server import Server, Stream, get, metrics
from tests.support.waiting import TIMEOUT, waitFor

#: The subscriber gauge's sample in C{/metrics}.
SUBSCRIBERS = ("logio_subscribers", ())


def subscribers(server: Server) -> float:
    """
    How many live subscribers C{/metrics} counts.
    """
    return metrics(server)[SUBSCRIBERS]


def unsearched(server: Server) -> float:
    """
    How many records C{/metrics} says were not searched for a pattern.
    """
    return metrics(server)[("logio_records_unsearched_total", ())]


def reset(stream: Stream) -> None:
    """
    Close a stream's connection with a reset (RST) instead of a FIN.
    """
    stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.sock.close()


class DeadSubscriberTests(SynchronousTestCase):
    """
    A subscriber whose client is gone is released within seconds, whatever
    its filter and format, and without a line written to a text stream.
    """

    def test_finAndReset(self) -> None:
        """
        Text, JSON and SSE subscribers with a filter that never matches,
        closed with a FIN or a reset, are all released and counted down in
        C{/metrics}; a subscriber that only half-closed stays, and sees no
        byte but its own lines.
        """
        server = Server(self)
        streams = [
            server.subscribe(f"app=^never$&format={format}")
            for format in ("text", "json", "sse")
            for _ in range(4)
        ]
        half = server.subscribe("app=^half$")
        half.sock.shutdown(socket.SHUT_WR)
        server.subscribed(len(streams) + 1)
        self.assertEqual(subscribers(server), len(streams) + 1)
        for number, stream in enumerate(streams):
            if number % 2:
                reset(stream)
            else:
                stream.close()
        began = time.monotonic()
        waitFor(lambda: subscribers(server) == 1, what="the dead subscribers to be released")
        self.assertLess(time.monotonic() - began, TIMEOUT)
        server.waitForLog(" went away, ", len(streams))
        # The half-closed one was probed all along, and saw nothing of it.
        server.publish(b"app=half\nstill here\n").close()
        [line] = half.lines(1)
        self.assertTrue(line.endswith(b" half[-] 127.0.0.1: still here"), half.body)
        self.assertEqual(half.body, line + b"\n")

    def test_killedCurl(self) -> None:
        """
        A subscription by a C{curl} that is killed goes within seconds: with
        C{--max-subscribers 2}, two abandoned ones do not lock others out.
        """
        server = Server(self, "--max-subscribers", "2")
        url = f"http://127.0.0.1:{server.subscribePort}/?app=^never$"
        for count in (1, 2):
            process = subprocess.Popen(
                [curl(), "-sN", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self.addCleanup(process.wait)
            server.subscribed(count)
            process.send_signal(signal.SIGKILL)
            process.wait()
        waitFor(lambda: subscribers(server) == 0, what="the killed curls' subscriptions to go")
        stream = server.subscribe("app=^after$")
        self.addCleanup(stream.close)
        self.assertEqual(stream.status, 200)
        self.assertEqual(get(server, "/healthz").status, 200)


class PipelineTests(SynchronousTestCase):
    """
    Pipelined requests whose answers are never read.
    """

    def test_unreadAnswers(self) -> None:
        """
        200,000 pipelined C{GET /healthz} on one connection that reads
        nothing: the server stops reading it rather than piling up answers,
        so its memory stays flat and others are served; when the client
        reads at last, every request it got to send is answered.
        """
        server = Server(self)
        before = procStatus(server.process.pid)["VmHWM"]
        request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
        data = request * 200000
        sock = socket.create_connection(("127.0.0.1", server.subscribePort), timeout=TIMEOUT)
        self.addCleanup(sock.close)
        sock.setblocking(False)
        sent = 0
        idle = time.monotonic()
        # Send until the kernel's buffers are full and stay full.
        while sent < len(data) and time.monotonic() - idle < 2:
            try:
                sent += sock.send(data[sent : sent + 65536])
                idle = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        self.assertEqual(get(server, "/healthz").status, 200)
        sock.setblocking(True)
        sock.settimeout(TIMEOUT)
        answers = 0
        marker = b"HTTP/1.1 200 "
        # The end of the last read, too short to hold a whole marker.
        tail = b""
        while answers < sent // len(request):
            chunk = sock.recv(1 << 20)
            self.assertNotEqual(chunk, b"", f"closed after {answers} answers")
            data = tail + chunk
            answers += data.count(marker)
            tail = data[-(len(marker) - 1) :]
        self.assertEqual(answers, sent // len(request))
        grown = procStatus(server.process.pid)["VmHWM"] - before
        self.assertLess(grown, 32 * 1024, f"the server's peak RSS grew by {grown} KiB")


class IngestBodyTests(SynchronousTestCase):
    """
    What HTTP request bodies in flight may hold together.
    """

    def test_stalledUploads(self) -> None:
        """
        Eight OTLP uploads that each declare 16 MiB, send 12 MiB and stall:
        the bodies held together stay within C{--max-ingest-bytes} (64 MiB),
        the uploads past it get a 503, and when the clients go the memory
        is given back.
        """
        server = Server(self)
        pid = server.process.pid
        before = procStatus(pid)["VmRSS"]
        head = (
            b"POST /v1/logs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (16 << 20)
        )
        piece = b"{" * (1 << 20)
        socks = []
        refused = 0
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", server.subscribePort), timeout=TIMEOUT)
            self.addCleanup(sock.close)
            socks.append(sock)
            try:
                sock.sendall(head)
                for _ in range(12):
                    sock.sendall(piece)
            except OSError:
                pass
            sock.settimeout(0.2)
            try:
                refused += sock.recv(65536).startswith(b"HTTP/1.1 503 ")
            except (TimeoutError, OSError):
                pass
        self.assertGreaterEqual(refused, 3)
        self.assertEqual(get(server, "/healthz").status, 200)
        peak = procStatus(pid)["VmHWM"] - before
        self.assertLess(peak, 96 * 1024, f"the server's peak RSS grew by {peak} KiB")
        for sock in socks:
            sock.close()

        def given() -> bool:
            return procStatus(pid)["VmRSS"] - before < 16 * 1024

        waitFor(given, what="the bodies' memory to be given back")


class LatencyPair:
    """
    A healthy publisher and subscriber beside whatever a test does: a line
    every 10 ms, and the longest any took to arrive.
    """

    def __init__(self, server: Server) -> None:
        self.stream = server.subscribe("app=^healthy$")
        server.subscribed(1)
        self.publisher = server.publish(b"app=healthy\n")
        self.worst = 0.0
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.publisher.sendall(b"ping %d\n" % self.sent)
            self.sent += 1
            self.stream.lines(self.sent, timeout=TIMEOUT)
            self.worst = max(self.worst, time.monotonic() - began)
            time.sleep(0.01)

    def stop(self) -> float:
        """
        Stop, and return the longest a line took, in seconds.
        """
        self._stop.set()
        self._thread.join(TIMEOUT)
        self.publisher.close()
        self.stream.close()
        return self.worst


class OTLPProtobufTests(SynchronousTestCase):
    """
    A large OTLP protobuf body, decoded and published in pieces.
    """

    def test_largeBodyDoesNotStall(self) -> None:
        """
        800,000 records in a 12 MB protobuf body are all published, while
        a healthy publisher and subscriber beside it keep their latency
        (a generous bound: before, the body held the server for seconds)
        and the server's memory grows by a small multiple of the body.
        """
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        export = ExportLogsServiceRequest()
        resource = export.resource_logs.add()
        attribute = resource.resource.attributes.add()
        attribute.key = "service.name"
        attribute.value.string_value = "big"
        scope = resource.scope_logs.add()
        count = 800_000
        for number in range(count):
            record = scope.log_records.add()
            record.time_unix_nano = 1700000000000000000 + number
            record.body.string_value = "x"
        body = export.SerializeToString()
        server = Server(self)
        before = procStatus(server.process.pid)["VmRSS"]
        pair = LatencyPair(server)
        self.addCleanup(pair.stop)
        connection = http.client.HTTPConnection("127.0.0.1", server.subscribePort, timeout=TIMEOUT)
        connection.request(
            "POST", "/v1/logs", body=body, headers={"Content-Type": "application/x-protobuf"}
        )
        response = connection.getresponse()
        response.read()
        self.assertEqual(response.status, 200)
        published = metrics(server)[("logio_records_in_total", (("protocol", "otlp"),))]
        self.assertEqual(published, count)
        worst = pair.stop()
        self.assertLess(worst, 1.0, f"the healthy pair's worst latency was {worst:.3f} s")
        grown = (procStatus(server.process.pid)["VmHWM"] - before) * 1024
        self.assertLess(grown, 4 * len(body), f"the server's peak RSS grew by {grown} bytes")


class HeavyPatternTests(SynchronousTestCase):
    """
    Fresh costly C{log} patterns, round after round.
    """

    def test_freshPatternsInRounds(self) -> None:
        """
        Four rounds of 100 new patterns that each pass the cost check but
        make RE2 leave its DFA on a 60 KB line: the patterns together never
        hold the server for long (a healthy publisher and subscriber keep
        their latency, a generous bound), and the subscribers whose
        patterns were not searched are told so.
        """
        server = Server(self)
        pair = LatencyPair(server)
        self.addCleanup(pair.stop)
        publisher = server.publish(b"app=heavy\n")
        self.addCleanup(publisher.close)
        choose = random.Random(7).choice
        line = bytes(choose(b"ab") for _ in range(60000)) + b"\n"
        told = 0
        for round in range(4):
            streams = [
                server.subscribe(f"app=^heavy$&log=%5Bab%5D*a%5Bab%5D%7B90%7Dc%7Czz{round}x{n}")
                for n in range(100)
            ]
            self.assertEqual({stream.status for stream in streams}, {200})
            server.subscribed(1 + 100 * (round + 1))
            before = unsearched(server)
            publisher.sendall(line * 3)
            waitFor(partial(lambda than: unsearched(server) > than, before), what="more unsearched")
            for stream in streams:
                try:
                    stream.sock.settimeout(0.1)
                    told += b"were not searched" in stream.sock.recv(65536)
                except OSError:
                    pass
                stream.close()
            waitFor(lambda: subscribers(server) == 1, what="the round's subscribers to go")
        worst = pair.stop()
        self.assertLess(worst, 1.0, f"the healthy pair's worst latency was {worst:.3f} s")
        self.assertGreater(told, 100)
        self.assertGreater(unsearched(server), 100)
