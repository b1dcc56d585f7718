"""
Tests for L{logio.client.handler.LogioHandler} and the publisher under it,
against L{Sink} test servers on real sockets: the wire format, buffering while
the server is away, drop accounting, stalled servers, TLS and Unix sockets.
"""

from __future__ import annotations

import datetime
import logging
import logging.config
import os
import socket
import ssl
import threading
import time
import tracemalloc
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from logio import LogioHandler
from logio.client.publisher import Publisher
from logio.client.url import parse_url
from tests.support.ports import freePort, socketPath
from tests.support.sink import Sink
from tests.support.tls import certificates, serverContext
from tests.support.waiting import TIMEOUT, waitFor


class HandlerTestCase(SynchronousTestCase):
    """
    Make handlers on private loggers, closed at the end of the test.
    """

    reports: list[str]

    def handler(self, url: str | None, **options: Any) -> LogioHandler:
        """
        A L{LogioHandler} whose reports are kept in C{self.reports}.
        """
        handler = LogioHandler(url, **options)
        self.reports = []
        handler.publisher.report = self.reports.append
        self.addCleanup(handler.close)
        # First, so that tests with no server do not wait flush_timeout.
        self.addCleanup(handler.publisher.close, 0.1)
        return handler

    def logger(self, handler: logging.Handler) -> logging.Logger:
        """
        A logger of its own at DEBUG that sends only to C{handler}.
        """
        logger = logging.getLogger(f"test.{self.id()}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)
        return logger


class WireFormatTests(HandlerTestCase):
    """
    What goes over the wire: the seed JSON protocol.
    """

    def test_topicThenRecords(self) -> None:
        """
        The topic object comes first, then one default-formatted record per log call.
        """
        sink = Sink(self)
        logger = self.logger(
            self.handler(f"logio://127.0.0.1:{sink.port}?app=myapp&proc=web&host=foobar")
        )
        logger.info("hello %s", "world")
        logger.warning("second")
        sink.waitForRaws(2)
        values = sink.values(0)
        self.assertEqual(values[0], {"app": "myapp", "proc": "web", "host": "foobar"})
        self.assertEqual(
            [value["raw"] for value in values[1:]],
            [f"INFO {logger.name}: hello world\n", f"WARNING {logger.name}: second\n"],
        )
        self.assertEqual(sorted(values[1]), ["raw", "time"])

    def test_timeIsCreationTime(self) -> None:
        """
        C{time} is the record's creation time, RFC 3339 with microseconds.
        """
        sink = Sink(self)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?app=a")
        created: list[float] = []

        def remember(record: logging.LogRecord) -> bool:
            created.append(record.created)
            return True

        handler.addFilter(remember)
        self.logger(handler).info("stamp")
        sink.waitForRaws(1)
        stamp = sink.values()[1]["time"]
        self.assertRegex(stamp, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
        parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        self.assertLess(abs(parsed.timestamp() - created[0]), 1e-6)

    def test_localOffset(self) -> None:
        """
        The time carries the local UTC offset as Go writes it: "Z", "-05:00", "+05:30".
        """
        old = os.environ.get("TZ")

        def restore() -> None:
            if old is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old
            time.tzset()

        self.addCleanup(restore)
        publisher = Publisher(parse_url("logio://h?app=a"))
        instant = 1481062461.448123  # 2016-12-06T22:14:21.448123Z
        for zone, expected in [
            ("UTC0", "2016-12-06T22:14:21.448123Z"),
            ("EST5", "2016-12-06T17:14:21.448123-05:00"),
            ("IST-5:30", "2016-12-07T03:44:21.448123+05:30"),
        ]:
            os.environ["TZ"] = zone
            time.tzset()
            publisher._records.forget()  # the cached second
            self.assertEqual(publisher._records.timestamp(instant), expected)

    def test_waitingPutWithoutSender(self) -> None:
        """
        A put that may wait for room does not wait when no sending thread is
        running (it never started, or died): the oldest record is dropped.
        """
        self.patch(Publisher, "_start", lambda self: None)
        publisher = Publisher(parse_url("logio://127.0.0.1:9?app=a"), max_records=2)

        def putThree() -> None:
            for i in range(3):
                publisher.put(1.0, f"r{i}", wait=True)

        putter = threading.Thread(target=putThree)
        putter.start()
        putter.join(TIMEOUT)
        self.assertFalse(putter.is_alive())
        self.assertEqual([raw for _, raw in publisher._queue], ["r1\n", "r2\n"])
        self.assertEqual(publisher.dropped_total, 1)

    def test_tracebackIsOneRecord(self) -> None:
        """
        A logged exception is one record whose text holds the traceback.
        """
        sink = Sink(self)
        logger = self.logger(self.handler(f"logio://127.0.0.1:{sink.port}?app=a"))
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            logger.exception("failed")
        (raw,) = sink.waitForRaws(1)
        self.assertTrue(raw.startswith(f"ERROR {logger.name}: failed\nTraceback"), raw)
        self.assertTrue(raw.endswith("ZeroDivisionError: division by zero\n"), raw)

    def test_ownFormatter(self) -> None:
        """
        A handler's own formatter replaces the default; a final newline is not doubled.
        """
        sink = Sink(self)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?app=a")
        handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
        self.logger(handler).error("custom\n")
        self.assertEqual(sink.waitForRaws(1), ["[ERROR] custom\n"])

    def test_unusualText(self) -> None:
        """
        Non-ASCII, control characters and a lone surrogate arrive as logged, in valid JSON.
        """
        sink = Sink(self)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?app=a")
        handler.setFormatter(logging.Formatter("%(message)s"))
        text = 'héllo 世界 "quoted" \\ \x00\x1b \U0001f600 bad:\udcff'
        self.logger(handler).info(text)
        self.assertEqual(sink.waitForRaws(1), [text + "\n"])

    def test_longRecordCut(self) -> None:
        """
        Records over max_record_bytes once encoded (escapes, UTF-8 included) are cut and marked.
        """
        sink = Sink(self)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?app=a", max_record_bytes=1000)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = self.logger(handler)
        logger.info("x" * 5000)
        logger.info("\x01é" * 5000)
        first, second = sink.waitForRaws(2)
        self.assertEqual(first, "x" * (1000 - 64 - len(" [truncated]\n")) + " [truncated]\n")
        self.assertTrue(second.startswith("\x01é\x01é"))
        self.assertTrue(second.endswith(" [truncated]\n"))
        for data in sink.connections:
            for piece in bytes(data).split(b'}{"time"'):
                self.assertLessEqual(len(piece), 1000 + 20)

    def test_emitNeverRaises(self) -> None:
        """
        A record that cannot be formatted goes to handleError; the logging call does not raise.
        """
        handler = self.handler(f"logio://127.0.0.1:{freePort()}?app=a")
        errors: list[logging.LogRecord] = []
        handler.handleError = errors.append
        self.logger(handler).info("%d items", "not a number")
        self.assertEqual(len(errors), 1)
        self.assertEqual(handler.publisher.pending, 0)


class BufferingTests(HandlerTestCase):
    """
    Records wait in a bounded queue while the server is away or slow, and
    the drops are counted and reported.
    """

    def test_serverDownAtStart(self) -> None:
        """
        Records logged before the server is up arrive once it starts.
        """
        port = freePort()
        logger = self.logger(self.handler(f"logio://127.0.0.1:{port}?app=a"))
        for i in range(5):
            logger.info("early %d", i)
        waitFor(lambda: self.reports, what="a report that the server is away")
        self.assertIn(f"cannot connect to 127.0.0.1:{port}", self.reports[0])
        sink = Sink(self, port)
        self.assertEqual(
            sink.waitForRaws(5), [f"INFO {logger.name}: early {i}\n" for i in range(5)]
        )
        waitFor(lambda: len(self.reports) == 2, what="a report that it is back")
        self.assertIn("connected to", self.reports[1])

    def wentAway(self, query: str, **options: Any) -> tuple[Sink, LogioHandler, logging.Logger]:
        """
        A handler (logging just the message) whose server received records
        0 to 9 and then went away.
        """
        sink = Sink(self)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?{query}", **options)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = self.logger(handler)
        for i in range(10):
            logger.info("%d", i)
        sink.waitForRaws(10)
        sink.stop()
        return sink, handler, logger

    def test_serverRestarted(self) -> None:
        """
        After a server restart the handler reconnects, resends the topic and loses nothing.
        """
        sink, handler, logger = self.wentAway("app=a&proc=p&host=h")
        for i in range(10, 20):
            logger.info("%d", i)
        again = Sink(self, sink.port)
        self.assertEqual(again.waitForRaws(10), [f"{i}\n" for i in range(10, 20)])
        self.assertEqual(again.values(0)[0], {"app": "a", "proc": "p", "host": "h"})

    def test_overflowWhileDown(self) -> None:
        """
        A full queue drops the oldest; the first record back says how many; the newest follow.
        """
        sink, handler, logger = self.wentAway("app=a", max_records=50)
        for i in range(10, 210):
            logger.info("%d", i)
        again = Sink(self, sink.port)
        raws = again.waitForRaws(51)
        self.assertEqual(
            raws[0],
            "logio: 150 records dropped: the client's queue was full "
            "(server unreachable or too slow)\n",
        )
        self.assertEqual(raws[1:], [f"{i}\n" for i in range(160, 210)])
        self.assertEqual(handler.publisher.dropped_total, 150)

    def test_dropCountEqualsRecordsLost(self) -> None:
        """
        Over several outages the drop notices add up to exactly the records lost.
        """
        sink = Sink(self)
        handler = self.handler(
            f"logio://127.0.0.1:{sink.port}?app=a",
            max_records=30,
            max_bytes=30 * 200,
            max_record_bytes=1000,
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = self.logger(handler)
        sent = 0
        sinks = [sink]

        def last() -> bool:
            return f"{sent - 1}\n" in sinks[-1].raws()

        for _round in range(3):
            for _ in range(100):
                logger.info("%d", sent)
                sent += 1
            # Bytes the kernel took but the server never read are lost
            # uncounted (at-most-once delivery): stop only once all is read.
            waitFor(last, what="the last record")
            sinks[-1].stop()
            for _ in range(100):
                logger.info("%d", sent)
                sent += 1
            sinks.append(Sink(self, sink.port))
        logger.info("%d", sent)
        sent += 1
        waitFor(last, what="the last record")
        raws = [raw for each in sinks for raw in each.raws()]
        notices = [raw for raw in raws if raw.startswith("logio: ")]
        numbers = [int(raw) for raw in raws if not raw.startswith("logio: ")]
        dropped = sum(int(notice.split()[1]) for notice in notices)
        self.assertEqual(numbers, sorted(set(numbers)))
        self.assertEqual(dropped, sent - len(numbers))
        self.assertEqual(dropped, handler.publisher.dropped_total)
        self.assertGreater(dropped, 0)

    def test_byteBound(self) -> None:
        """
        The queue holds at most max_bytes: long records push out the oldest.
        """
        handler = self.handler(
            f"logio://127.0.0.1:{freePort()}?app=a", max_bytes=10_000, max_record_bytes=1000
        )
        logger = self.logger(handler)
        for _ in range(100):
            logger.info("x" * 900)
        publisher = handler.publisher
        self.assertLessEqual(publisher._queued_bytes, 10_000)
        self.assertEqual(len(publisher._queue) + publisher.dropped_total, 100)
        self.assertGreater(publisher.dropped_total, 85)

    def test_flushSends(self) -> None:
        """
        flush() returns once everything logged was written to the socket.
        """
        sink = Sink(self)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?app=a")
        logger = self.logger(handler)
        for i in range(1000):
            logger.info("%d", i)
        handler.flush()
        self.assertEqual(handler.publisher.pending, 0)
        self.assertEqual(len(sink.waitForRaws(1000)), 1000)

    def test_flushGivesUp(self) -> None:
        """
        With the server away, flush() waits flush_timeout and returns.
        """
        handler = self.handler(f"logio://127.0.0.1:{freePort()}?app=a", flush_timeout=0.3)
        self.logger(handler).info("never sent")
        started = time.monotonic()
        handler.flush()
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.29)
        self.assertLess(elapsed, 2)
        self.assertEqual(handler.publisher.pending, 1)

    def test_closedIgnoresRecords(self) -> None:
        """
        After close(), records are ignored rather than queued forever.
        """
        sink = Sink(self)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?app=a")
        logger = self.logger(handler)
        logger.info("before")
        handler.close()
        logger.info("after")
        self.assertEqual(handler.publisher.pending, 0)
        self.assertEqual(len(sink.waitForRaws(1)), 1)

    def test_manyThreads(self) -> None:
        """
        Records from many threads at once all arrive, once each, in each thread's order.
        """
        sink = Sink(self)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?app=a")
        handler.setFormatter(logging.Formatter("%(threadName)s %(message)s"))
        logger = self.logger(handler)

        def work() -> None:
            for i in range(500):
                logger.info("%d", i)

        threads = [threading.Thread(target=work, name=f"t{n}") for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        raws = sink.waitForRaws(4000)
        self.assertEqual(len(raws), 4000)
        for n in range(8):
            mine = [raw for raw in raws if raw.startswith(f"t{n} ")]
            self.assertEqual(mine, [f"t{n} {i}\n" for i in range(500)])


class StalledServerTests(HandlerTestCase):
    """
    A server that accepts but never reads cannot slow the application.
    """

    def test_loggingStaysFast(self) -> None:
        """
        Against a server that never reads, no call blocks and the queue stays bounded.
        """
        sink = Sink(self, read=False)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?app=a", max_records=1000)
        logger = self.logger(handler)
        slowest = 0.0
        for i in range(60000):
            started = time.perf_counter()
            logger.info("record %d with some padding to fill the buffers faster", i)
            slowest = max(slowest, time.perf_counter() - started)
        self.assertLess(slowest, 0.25)
        publisher = handler.publisher
        self.assertLessEqual(len(publisher._queue), 1000)
        self.assertGreater(publisher.dropped_total, 0)
        self.assertEqual(len(sink.connections), 1)

    def test_memoryBounded(self) -> None:
        """
        Against a server that never reads, memory stays within a fixed bound.
        """
        sink = Sink(self, read=False)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?app=a", max_records=500)
        logger = self.logger(handler)
        message = "record %d " + "y" * 200
        peaks = []
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        for count in (2000, 20000):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            for i in range(count):
                logger.info(message, i)
            peaks.append(tracemalloc.get_traced_memory()[1] - before)
        # Kept, 20000 of these records would take about 8 MB; the queue (500
        # records) and the batch being written take well under 2 MiB.
        self.assertLess(max(peaks), 2 * 1024 * 1024)

    def test_writeTimeout(self) -> None:
        """
        A write stuck past write_timeout gives the connection up and redials.
        """
        sink = Sink(self, read=False)
        handler = self.handler(
            f"logio://127.0.0.1:{sink.port}?app=a", write_timeout=0.2, max_records=1000
        )
        logger = self.logger(handler)

        def moreConnections() -> bool:
            for _ in range(200):
                logger.info("x" * 1000)
            return len(sink.connections) >= 2

        waitFor(moreConnections, what="a second connection")

    def test_closeDoesNotHang(self) -> None:
        """
        close() returns after flush_timeout even while a write is stuck.
        """
        sink = Sink(self, read=False)
        handler = self.handler(
            f"logio://127.0.0.1:{sink.port}?app=a", flush_timeout=0.2, write_timeout=30
        )
        logger = self.logger(handler)
        for _ in range(2000):
            logger.info("x" * 500)
        waitFor(lambda: sink.connections, what="the connection")
        started = time.monotonic()
        handler.close()
        self.assertLess(time.monotonic() - started, 2)
        thread = handler.publisher._thread
        assert thread is not None
        thread.join(5)
        self.assertFalse(thread.is_alive())


class ServerTalkTests(HandlerTestCase):
    """
    The server only speaks to say why it closes the connection.
    """

    def test_serverErrorReported(self) -> None:
        """
        An error line from the server is reported, and the handler redials.
        """
        sink = Sink(self, reply=b"error: topic refused\n")
        logger = self.logger(self.handler(f"logio://127.0.0.1:{sink.port}?app=a"))

        def said() -> bool:
            logger.info("again")
            return any("topic refused" in report for report in self.reports)

        waitFor(said, what="the server's error")
        self.assertIn(
            f"127.0.0.1:{sink.port} closed the connection: error: topic refused",
            [r for r in self.reports if "refused" in r][0],
        )
        waitFor(lambda: len(sink.connections) >= 2, what="a new connection")

    def test_silentCloseHintsAtTLS(self) -> None:
        """
        A server that closes a plain connection without a word is not a
        logio server: the report asks whether it is a TLS server.
        """
        sink = Sink(self, reply=b"")
        logger = self.logger(self.handler(f"logio://127.0.0.1:{sink.port}?app=a"))

        def said() -> bool:
            logger.info("again")
            return any("TLS server?" in report for report in self.reports)

        waitFor(said, what="the TLS hint")
        self.assertIn(
            f"logio: 127.0.0.1:{sink.port} closed the connection without an answer: TLS server? "
            "(then publish with logios://)",
            self.reports,
        )

    def test_tlsAnswerHintsAtTLS(self) -> None:
        """
        A server that answers with a TLS record says so too.
        """
        sink = Sink(self, reply=b"\x15\x03\x03\x00\x02\x02\x46")
        logger = self.logger(self.handler(f"logio://127.0.0.1:{sink.port}?app=a"))

        def said() -> bool:
            logger.info("again")
            return any("answered in TLS" in report for report in self.reports)

        waitFor(said, what="the TLS hint")

    def test_tokenSent(self) -> None:
        """
        The URL's token goes in the topic, as the "token" field.
        """
        sink = Sink(self)
        logger = self.logger(
            self.handler(f"logio://user:s3cret@127.0.0.1:{sink.port}?app=a&host=h")
        )
        logger.info("with a token")
        sink.waitForRaws(1)
        self.assertEqual(sink.values(0)[0]["token"], "s3cret")


class TransportTests(HandlerTestCase):
    """
    TLS (logios://) and Unix sockets (logio+unix://).
    """

    def test_tlsWithCA(self) -> None:
        """
        logios:// with ?ca= verifies the server against that CA and sends over TLS.
        """
        paths = certificates(self.mktemp(), ["localhost", "127.0.0.1"])
        sink = Sink(self, tls=serverContext(paths))
        logger = self.logger(self.handler(f"logios://localhost:{sink.port}?app=a&ca={paths['ca']}"))
        logger.info("secret")
        self.assertEqual(sink.waitForRaws(1), [f"INFO {logger.name}: secret\n"])

    def test_tlsUnknownCA(self) -> None:
        """
        A certificate from another CA is refused: nothing is sent, and the report says why.
        """
        paths = certificates(self.mktemp(), ["localhost"])
        other = certificates(self.mktemp(), ["localhost"])
        sink = Sink(self, tls=serverContext(paths))
        logger = self.logger(self.handler(f"logios://localhost:{sink.port}?app=a&ca={other['ca']}"))
        logger.info("secret")
        waitFor(lambda: self.reports, what="a report")
        self.assertIn("CERTIFICATE_VERIFY_FAILED", self.reports[0])
        self.assertEqual(sink.raws(), [])

    def test_tlsHostNameChecked(self) -> None:
        """
        A certificate for another host name is refused.
        """
        paths = certificates(self.mktemp(), ["logs.example.com"])
        sink = Sink(self, tls=serverContext(paths))
        logger = self.logger(self.handler(f"logios://localhost:{sink.port}?app=a&ca={paths['ca']}"))
        logger.info("secret")
        waitFor(lambda: self.reports, what="a report")
        self.assertIn("match", self.reports[0])
        self.assertEqual(sink.raws(), [])

    def test_badCAFile(self) -> None:
        """
        A ?ca= file that cannot be loaded is a ValueError at creation.
        """
        missing = os.path.join(self.mktemp(), "nothing.pem")
        error = self.assertRaises(ValueError, LogioHandler, f"logios://h?app=a&ca={missing}")
        self.assertIn("cannot load the logio CA file", str(error))

    def test_systemStore(self) -> None:
        """
        Without ?ca=, logios:// trusts only the system's CAs, so a private CA is refused.
        """
        paths = certificates(self.mktemp(), ["localhost"])
        sink = Sink(self, tls=serverContext(paths))
        handler = self.handler(f"logios://localhost:{sink.port}?app=a")
        context = handler.publisher._tls
        assert context is not None
        self.assertEqual(context.verify_mode, ssl.CERT_REQUIRED)
        self.assertTrue(context.check_hostname)
        self.logger(handler).info("secret")
        waitFor(lambda: self.reports, what="a report")
        self.assertIn("CERTIFICATE_VERIFY_FAILED", self.reports[0])

    def test_unixSocket(self) -> None:
        """
        logio+unix:// publishes to a Unix socket.
        """
        path = socketPath(self, "sink.sock")
        sink = Sink(self, unix=path)
        logger = self.logger(self.handler(f"logio+unix://{path}?app=a&proc=p&host=h"))
        logger.info("local")
        self.assertEqual(sink.waitForRaws(1), [f"INFO {logger.name}: local\n"])
        self.assertEqual(sink.values(0)[0], {"app": "a", "proc": "p", "host": "h"})

    def test_socketOptions(self) -> None:
        """
        The TCP socket has TCP_NODELAY (no Nagle delay) and SO_KEEPALIVE (a dead server is found).
        """
        sink = Sink(self)
        handler = self.handler(f"logio://127.0.0.1:{sink.port}?app=a")
        self.logger(handler).info("connected")
        sink.waitForRaws(1)
        sock = handler.publisher._sock
        assert sock is not None
        self.assertTrue(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        self.assertTrue(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))


class ConfigurationTests(HandlerTestCase):
    """
    Making the handler: from code, from LOGIO_URL, from dictConfig.
    """

    def test_urlFromEnvironment(self) -> None:
        """
        Without a URL the handler uses LOGIO_URL.
        """
        sink = Sink(self)
        self.patch(os, "environ", {"LOGIO_URL": f"logio://127.0.0.1:{sink.port}?app=envapp"})
        handler = self.handler(None)
        self.assertEqual(handler.publisher.target.app, "envapp")

    def test_noURL(self) -> None:
        """
        No URL and no LOGIO_URL is a ValueError that says so.
        """
        self.patch(os, "environ", {})
        error = self.assertRaises(ValueError, LogioHandler)
        self.assertIn("LOGIO_URL is not set", str(error))

    def test_badURLRegistersNothing(self) -> None:
        """
        A bad URL raises ValueError before the handler is registered with logging.
        """
        before = len(logging._handlerList)  # type: ignore[attr-defined]
        error = self.assertRaises(ValueError, LogioHandler, "logio://h:99999?app=a")
        self.assertIn("bad port", str(error))
        self.assertRaises(ValueError, LogioHandler, "logio://h")
        self.assertRaises(ValueError, LogioHandler, "logio://h?app=a", max_records=0)
        self.assertEqual(len(logging._handlerList), before)  # type: ignore[attr-defined]

    def test_dictConfig(self) -> None:
        """
        dictConfig builds the handler from its class path, kwargs, level and formatter.
        """
        sink = Sink(self)
        name = f"test.{self.id()}"
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"short": {"format": "%(levelname)s|%(message)s"}},
                "handlers": {
                    "logio": {
                        "class": "logio.LogioHandler",
                        "url": f"logio://127.0.0.1:{sink.port}?app=cfg&proc=worker",
                        "max_records": 123,
                        "flush_timeout": 1.5,
                        "level": "WARNING",
                        "formatter": "short",
                    }
                },
                "loggers": {name: {"handlers": ["logio"], "level": "DEBUG", "propagate": False}},
            }
        )
        logger = logging.getLogger(name)
        (handler,) = logger.handlers
        self.addCleanup(handler.close)
        self.addCleanup(logger.removeHandler, handler)
        assert isinstance(handler, LogioHandler)
        self.assertEqual(handler.publisher.max_records, 123)
        self.assertEqual(handler.publisher.flush_timeout, 1.5)
        logger.info("filtered out")
        logger.warning("kept")
        self.assertEqual(sink.waitForRaws(1), ["WARNING|kept\n"])
        self.assertEqual(sink.values(0)[0]["proc"], "worker")
