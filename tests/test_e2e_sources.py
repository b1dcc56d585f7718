"""
End-to-end tests of the other ways in, against C{twistd -n logio} and the
real programs: util-linux C{logger} over TCP (RFC 5424, octet-counted, RFC
3164) and UDP, a real C{rsyslogd} forwarding with C{omfwd}, and C{curl}
posting text, NDJSON, a 200 MB body and OTLP JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.payloads import COLLECTOR_EXPORT
from tests.support.ports import freeUDPPort, socketPath
from tests.support.processes import curl, procStatus, runCurl
from tests.support.server import Server
from tests.support.waiting import TIMEOUT, waitFor

#: An output line: timestamp, app, proc, host, text.
LINE = re.compile(rb"(\S+) ([^\[\s]+)\[([^\]\s]+)\] (\S+): (.*)")


def program(name: str) -> str:
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if found is None:
        raise SkipTest(f"{name} is not installed")
    return found


def stamp(when: float) -> bytes:
    return (
        datetime.fromtimestamp(when, timezone.utc)
        .replace(tzinfo=None)
        .isoformat(timespec="milliseconds")
        .encode()
    )


class LoggerTests(SynchronousTestCase):
    """
    util-linux logger, each of its wire forms, to the publisher port.
    """

    def setUp(self) -> None:
        self.udp = freeUDPPort()
        self.server = Server(self, "--syslog-udp", f"127.0.0.1:{self.udp}")
        self.stream = self.server.subscribe("app=^logger-")
        self.server.subscribed(1)

    def logger(self, *args: str) -> None:
        subprocess.run(
            [program("logger"), "-n", "127.0.0.1", "--id=4242", *args],
            check=True,
            timeout=TIMEOUT,
        )

    def test_everyForm(self) -> None:
        """
        --tcp --rfc5424, --tcp --octet-count, --tcp --rfc3164 and --udp:
        app, proc (the --id), host (this machine's name), time and text are
        exactly what logger sent.
        """
        port = str(self.server.publishPort)
        before = time.time()
        self.logger("--tcp", "--rfc5424", "-P", port, "-t", "logger-5424", "five four two four")
        self.logger("--tcp", "--octet-count", "-P", port, "-t", "logger-octets", "counted")
        self.logger("--tcp", "--rfc3164", "-P", port, "-t", "logger-bsd", "the old form")
        self.logger("--udp", "-P", str(self.udp), "-t", "logger-udp", "over udp")
        after = time.time()
        lines = self.stream.lines(4)
        host = socket.gethostname().encode()
        parsed = [LINE.fullmatch(line) for line in lines]
        self.assertTrue(all(parsed), lines)
        self.assertEqual(
            [m.groups()[1:] for m in parsed if m],
            [
                (b"logger-5424", b"4242", host, b"five four two four"),
                (b"logger-octets", b"4242", host, b"counted"),
                (b"logger-bsd", b"4242", host, b"the old form"),
                (b"logger-udp", b"4242", host, b"over udp"),
            ],
        )
        stamps = [m.group(1) for m in parsed if m]
        for index in (0, 1, 3):
            # RFC 5424 times, to the microsecond, then cut to milliseconds.
            self.assertTrue(stamp(before - 0.001) <= stamps[index] <= stamp(after), stamps[index])
        # RFC 3164 times have whole seconds, read as UTC.
        self.assertTrue(stamps[2].endswith(b".000"), stamps[2])
        self.assertTrue(stamp(int(before)) <= stamps[2] <= stamp(after), stamps[2])


class RsyslogTests(SynchronousTestCase):
    """
    A real rsyslogd forwarding to logio.
    """

    def test_omfwdOctetCounted(self) -> None:
        """
        rsyslogd, reading its own UNIX socket (imuxsock) and forwarding
        with omfwd over TCP, octet-counted RFC 5424, with the README's
        template: every line arrives, in order, with its app and proc.
        """
        rsyslogd = program("rsyslogd")
        server = Server(self)
        stream = server.subscribe("app=^rsyslog-test$")
        server.subscribed(1)
        # A short folder: a UNIX socket's path is at most 107 bytes.
        sock = socketPath(self, "log.sock")
        directory = os.path.dirname(sock)
        config = os.path.join(directory, "rsyslog.conf")
        with open(config, "w") as f:
            f.write(
                f"""
global(workDirectory="{directory}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{sock}")
template(name="logio" type="string"
  string="<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% %APP-NAME% %PROCID% %MSGID% %STRUCTURED-DATA%%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\\n")
action(type="omfwd" target="127.0.0.1" port="{server.publishPort}" protocol="tcp"
       TCP_Framing="octet-counted" template="logio")
"""
            )
        output = os.path.join(directory, "rsyslogd.out")
        with open(output, "wb") as out:
            process = subprocess.Popen(
                [rsyslogd, "-n", "-f", config, "-i", os.path.join(directory, "rsyslogd.pid")],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.addCleanup(process.wait)
        self.addCleanup(process.terminate)
        waitFor(
            lambda: os.path.exists(sock) or process.poll() is not None, what="rsyslogd's socket"
        )
        if process.poll() is not None:
            with open(output) as f:
                self.fail(f"rsyslogd exited: {f.read()}")
        count = 300
        text = "".join(f"line {n} of {count}\n" for n in range(count))
        subprocess.run(
            [program("logger"), "-u", sock, "-t", "rsyslog-test", "--id=777"],
            input=text.encode(),
            check=True,
            timeout=TIMEOUT,
        )
        lines = stream.lines(count)
        self.assertEqual(
            [
                LINE.fullmatch(line).groups()[1:3] + (LINE.fullmatch(line).group(5),)
                for line in lines
            ],  # type: ignore[union-attr]
            [(b"rsyslog-test", b"777", f"line {n} of {count}".encode()) for n in range(count)],
        )


class HTTPPostTests(SynchronousTestCase):
    """
    curl posting to /publish and /v1/logs.
    """

    def setUp(self) -> None:
        self.server = Server(self)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.subscribePort}{path}"

    def test_textAndNDJSON(self) -> None:
        """
        A text body and an NDJSON body, as curl sends them; the answers
        count what was accepted and rejected.
        """
        stream = self.server.subscribe("app=^post")
        self.server.subscribed(1)
        self.assertEqual(
            runCurl(
                "--data-binary", "one\ntwo\n", self.url("/publish?app=post-text&proc=curl&host=h")
            ),
            (200, '{"accepted": 2, "rejected": 0}'),
        )
        body = '{"app": "post-json", "log": "object", "time": "2020-01-02T03:04:05.678Z"}\nbroken\n'
        code, answer = runCurl(
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            body,
            self.url("/publish?host=j"),
        )
        self.assertEqual(
            (code, json.loads(answer)["accepted"], json.loads(answer)["rejected"]), (200, 1, 1)
        )
        lines = stream.lines(3)
        self.assertEqual(
            [line.split(b" ", 1)[1] for line in lines[:2]],
            [b"post-text[curl] h: one", b"post-text[curl] h: two"],
        )
        self.assertEqual(lines[2], b"2020-01-02T03:04:05.678 post-json[-] j: object")

    def test_maxLine(self) -> None:
        """
        C{--max-line} bounds HTTP ingest as it does every other source: a
        200-character line posted to a server with C{--max-line 80} comes
        out cut at 80 and marked, and the next line whole.
        """
        server = Server(self, "--max-line", "80")
        stream = server.subscribe("app=^cut$")
        server.subscribed(1)
        url = f"http://127.0.0.1:{server.subscribePort}/publish?app=cut&proc=curl&host=h"
        self.assertEqual(
            runCurl("--data-binary", "y" * 200 + "\nnext\n", url),
            (200, '{"accepted": 2, "rejected": 0}'),
        )
        self.assertEqual(
            [line.split(b": ", 1)[1] for line in stream.lines(2)],
            [b"y" * 80 + b" [truncated]", b"next"],
        )

    def test_bigBodyStreams(self) -> None:
        """
        A 200 MB body streams through: every line is accepted, and the
        server's memory stays flat (its peak grows by far less than the body).
        """

        def peak() -> int:
            return procStatus(self.server.process.pid)["VmHWM"] * 1024

        before = peak()
        line = b"x" * 999 + b"\n"
        lines = 200 * 1000
        writer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import sys\nfor _ in range({lines}): sys.stdout.buffer.write({line!r})",
            ],
            stdout=subprocess.PIPE,
        )
        result = subprocess.run(
            [curl(), "-s", "-X", "POST", "-T", "-", self.url("/publish?app=big")],
            stdin=writer.stdout,
            capture_output=True,
            timeout=TIMEOUT * 10,
        )
        writer.wait()
        self.assertEqual(json.loads(result.stdout), {"accepted": lines, "rejected": 0})
        grown = peak() - before
        self.assertLess(grown, 64 * 1024 * 1024, f"the server's peak RSS grew by {grown} bytes")

    def test_otlpJSON(self) -> None:
        """
        OTLP JSON shaped as the Collector sends it.
        """
        stream = self.server.subscribe("app=checkout")
        self.server.subscribed(1)
        code, answer = runCurl(
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            json.dumps(COLLECTOR_EXPORT),
            self.url("/v1/logs"),
        )
        self.assertEqual((code, json.loads(answer)), (200, {}))
        self.assertEqual(
            stream.lines(2),
            [
                b"2018-12-13T14:51:00.300 checkout[i-42] node-1: order 17 paid",
                b'2018-12-13T14:51:01.000 checkout[i-42] node-1: {"event": "refund", "amount": 9.5}',
            ],
        )
