"""
Tests for the C{logio} command (L{logio.client.cli}), run as a subprocess:
C{pub} against L{Sink} servers, and both commands' help and errors.
C{tail} is in L{tests.test_client_tail}.
"""

from __future__ import annotations

import signal
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from tests.support.ports import freePort
from tests.support.processes import Running, environment, logio, pub
from tests.support.sink import Sink


class VersionTests(SynchronousTestCase):
    """
    C{logio --version}.
    """

    def test_version(self) -> None:
        """
        It prints the installed version and exits 0.
        """
        import importlib.metadata

        result = subprocess.run(
            logio("--version"), capture_output=True, env=environment(), timeout=20
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.strip(), f"logio {importlib.metadata.version('logio')}".encode()
        )


class PubTests(SynchronousTestCase):
    """
    C{logio pub URL} publishes standard input, one record per line.
    """

    def test_publishesLines(self) -> None:
        """
        One record per line; CRLF becomes LF, a last line gets its newline; status 0.
        """
        sink = Sink(self)
        result = pub(
            f"logio://127.0.0.1:{sink.port}?app=cli&proc=batch&host=h",
            stdin=b"one\ntwo\r\nthr\xc3\xa9e",
        )
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertEqual(sink.waitForRaws(3), ["one\n", "two\n", "thr\u00e9e\n"])
        self.assertEqual(sink.values(0)[0], {"app": "cli", "proc": "batch", "host": "h"})

    def test_defaultProc(self) -> None:
        """
        Without proc in the URL, the lines' proc says they came from logio
        pub's input ("stdin"), not the program's name.
        """
        sink = Sink(self)
        result = pub(f"logio://127.0.0.1:{sink.port}?app=cli&host=h", stdin=b"x\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        sink.waitForRaws(1)
        self.assertEqual(sink.values(0)[0], {"app": "cli", "proc": "stdin", "host": "h"})

    def interruptedPub(self) -> tuple[Sink, Running]:
        """
        A C{logio pub} reading a pipe, one line sent, then Ctrl-C once.
        """
        sink = Sink(self)
        running = Running(
            self, logio("pub", f"logio://127.0.0.1:{sink.port}?app=a"), stdin=subprocess.PIPE
        )
        assert running.process.stdin is not None
        running.process.stdin.write(b"started\n")
        running.process.stdin.flush()
        sink.waitForRaws(1)
        running.process.send_signal(signal.SIGINT)
        return sink, running

    def test_ctrlCReadsToEnd(self) -> None:
        """
        Ctrl-C (which reaches the whole pipeline) does not cut the app's
        last lines off: reading goes on to the end of input, status 0.
        """
        sink, running = self.interruptedPub()
        running.waitErr(b"reading to the end of input")
        assert running.process.stdin is not None
        running.process.stdin.write(b"shutting down\nbye\n")
        running.process.stdin.close()
        self.assertEqual(running.process.wait(20), 0, running.err)
        self.assertEqual(sink.waitForRaws(3), ["started\n", "shutting down\n", "bye\n"])

    def test_secondCtrlCInterrupts(self) -> None:
        """
        A second Ctrl-C ends C{logio pub} at once with status 130.
        """
        _, running = self.interruptedPub()
        running.waitErr(b"Ctrl-C again to stop now")
        self.assertEqual(running.interrupt(), 130)

    def test_serverAway(self) -> None:
        """
        With the server away it gives up after --timeout, says how many were not sent, status 1.
        """
        port = freePort()
        result = pub("--timeout", "0.3", f"logio://127.0.0.1:{port}?app=a", stdin=b"1\n2\n3\n")
        self.assertEqual(result.returncode, 1)
        self.assertIn(
            f"logio pub: 3 lines were not sent within 0.3 s to 127.0.0.1:{port}\n".encode(),
            result.stderr,
        )

    def test_overflow(self) -> None:
        """
        Past --max-lines the oldest lines are dropped, and it says so.
        """
        result = pub(
            "--timeout",
            "0.3",
            "--max-lines",
            "2",
            f"logio://127.0.0.1:{freePort()}?app=a",
            stdin=b"1\n2\n3\n4\n5\n",
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"logio pub: 3 lines dropped: the queue was full\n", result.stderr)
        self.assertIn(b"logio pub: 2 lines were not sent", result.stderr)

    def test_burstAllArrive(self) -> None:
        """
        A burst far past the queue's bounds arrives whole and in order at a
        server that reads slower than the input comes: while the server is
        up, reading input waits for the sender instead of dropping lines.
        """
        sink = Sink(self, slow=True)
        lines = [b"%099d\n" % i for i in range(100_000)]
        url = f"logio://127.0.0.1:{sink.port}?app=a"
        result = pub("--timeout", "20", url, stdin=b"".join(lines))
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertEqual(sink.waitForRaws(len(lines)), [line.decode() for line in lines])

    def test_maxLinesKeptWhileAway(self) -> None:
        """
        While the server is away --max-lines lines of usual length are all
        kept: the byte bound grows with it.
        """
        result = pub(
            "--timeout",
            "0.3",
            "--max-lines",
            "15000",
            f"logio://127.0.0.1:{freePort()}?app=a",
            stdin=b"%099d\n" * 15000 % tuple(range(15000)),
        )
        self.assertEqual(result.returncode, 1)
        self.assertNotIn(b"dropped", result.stderr)
        self.assertIn(b"logio pub: 15000 lines were not sent", result.stderr)

    def test_maxBytes(self) -> None:
        """
        --max-bytes bounds the lines kept while the server is away, each
        counting its length plus 64; the drops are counted exactly.
        """
        result = pub(
            "--timeout",
            "0.3",
            "--max-lines",
            "15000",
            "--max-bytes",
            "1M",
            f"logio://127.0.0.1:{freePort()}?app=a",
            stdin=b"%099d\n" * 15000 % tuple(range(15000)),
        )
        kept = (1 << 20) // (100 + 64)
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"logio pub: {15000 - kept} lines dropped".encode(), result.stderr)
        self.assertIn(f"logio pub: {kept} lines were not sent".encode(), result.stderr)

    def test_longLine(self) -> None:
        """
        An over-long line is cut and marked; the next line is published as usual.
        """
        sink = Sink(self)
        result = pub(f"logio://127.0.0.1:{sink.port}?app=a", stdin=b"z" * 300_000 + b"\nnext\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        first, second = sink.waitForRaws(2)
        self.assertTrue(first.startswith("zzz"))
        self.assertTrue(first.endswith(" [truncated]\n"))
        self.assertLess(len(first), 65536)
        self.assertEqual(second, "next\n")

    def test_badURL(self) -> None:
        """
        A bad URL is one line on stderr and exit status 2.
        """
        result = pub("logio://127.0.0.1:7701")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr,
            b"logio pub: logio URL 'logio://127.0.0.1:7701' has no app: add ?app=NAME\n",
        )


class UsageTests(SynchronousTestCase):
    """
    Help and argument errors.
    """

    def test_help(self) -> None:
        """
        --help on the command and each subcommand describes it; status 0.
        """
        for args, says in [
            ([], b"pub"),
            (["pub"], b"logio pub [-h] [--timeout SECONDS]"),
            (["tail"], b"logio tail [-h] [--color {auto,always,never}]"),
        ]:
            result = subprocess.run(
                logio(*args, "--help"), capture_output=True, env=environment(), timeout=30
            )
            self.assertEqual(result.returncode, 0)
            self.assertIn(says, result.stdout)

    def test_argumentErrors(self) -> None:
        """
        A wrong command line is one line on stderr and exit status 2.
        """
        for args, says in [
            ([], b"logio: error: the following arguments are required: COMMAND"),
            (["pub"], b"logio pub: error: the following arguments are required: URL"),
            (["pub", "--timeout", "-1", "logio://h?app=a"], b"not a positive number"),
            (["pub", "--max-bytes", "1000", "logio://h?app=a"], b"not a size of at least 64K"),
            (["pub", "--max-bytes", "1X", "logio://h?app=a"], b"not a size of at least 64K"),
            (["tail", "--color", "sometimes", "http://h/"], b"invalid choice: 'sometimes'"),
            (["tail", "ftp://h/"], b"logio tail: URL 'ftp://h/' must look like http://"),
            (["tail", "--ca", "x.pem", "http://h/"], b"--ca is only for https:// URLs"),
            (["tail", "--ca", "x.pem", "h:9000"], b"--ca is only for https:// URLs"),
            (["tail", "http://h:port/"], b"logio tail: URL 'http://h:port/' has a bad port"),
            (["tail", "-n", "-1", "h"], b"argument -n/--tail: '-1' is not a whole number"),
            (["tail", "h/?format=sse"], b"asks for format=sse: logio tail prints text, or JSON"),
        ]:
            result = subprocess.run(
                logio(*args), capture_output=True, env=environment(), timeout=30
            )
            self.assertEqual(result.returncode, 2, args)
            self.assertIn(says, result.stderr)
            self.assertEqual(result.stderr.count(b"\n"), 1, result.stderr)

    def test_tailHelp(self) -> None:
        """
        tail's --help describes every flag and gives the examples.
        """
        result = subprocess.run(
            logio("tail", "--help"), capture_output=True, env=environment(), timeout=30
        )
        self.assertEqual(result.returncode, 0)
        for says in [
            b"--app RE",
            b"--proc RE",
            b"--host RE",
            b"--log RE",
            b"-n N, --tail N",
            b"-f, --follow, --no-follow",
            b"--json",
            b"--level LEVEL",
            b"never on a reconnection",
            b"resumes after the",
            b"http://localhost:7702/",
            b"logio tail --app myapp --log '\\d+ms' -n 100\n",
        ]:
            self.assertIn(says, result.stdout)
