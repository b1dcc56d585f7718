"""
End-to-end tests of the syslog clients programs already have, against
C{twistd -n logio}: Python's own C{logging.handlers.SysLogHandler} over UDP
(C{--syslog-udp}) and over TCP (the publisher port, a NUL after each
message), and the exact bytes of Go's C{log/syslog}, read back as JSON.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from tests.support.ports import freeUDPPort
from tests.support.processes import runPython
from tests.support.server import Server, Stream, metrics
from tests.support.waiting import waitFor

#: Log records at each level through SysLogHandler: with a tag in the
#: format, with an ident and the default format, and with neither; then
#: an exception with its traceback.  Prints the pid and the exception's
#: formatted text.
SCRIPT = """
import json, logging, logging.handlers, os, socket

def handler(ident, fmt):
    h = logging.handlers.SysLogHandler(("127.0.0.1", PORT), socktype=SOCKTYPE)
    h.ident = ident
    h.setFormatter(logging.Formatter(fmt))
    return h

tagged = logging.getLogger("pyapp")
tagged.setLevel(logging.DEBUG)
tagged.addHandler(handler("", "%(name)s[%(process)d]: %(message)s"))
tagged.debug("debugging")
tagged.info("started")
tagged.warning("low stock")
tagged.error("payment refused")
tagged.critical("out of memory")
ident = logging.getLogger("ident")
ident.addHandler(handler("pyident: ", "%(message)s"))
ident.error("with an ident")
plain = logging.getLogger("plain")
plain.addHandler(handler("", "%(message)s"))
plain.warning("no tag: none at all")
texts = []
collector = logging.Handler()
collector.setFormatter(logging.Formatter("%(message)s"))
collector.emit = lambda record: texts.append(collector.format(record))
tagged.addHandler(collector)
try:
    {}["sku-42"]
except KeyError:
    tagged.exception("checkout failed")
for log in (tagged, ident, plain):
    for h in log.handlers:
        h.close()
print(json.dumps({"pid": os.getpid(), "exception": texts[0]}))
"""


def records(stream: Stream, count: int) -> list[dict[str, Any]]:
    """
    The first C{count} records of a C{format=json} subscription.
    """
    return [json.loads(line) for line in stream.lines(count)]


class SysLogHandlerTests(SynchronousTestCase):
    """
    Python's SysLogHandler, unchanged, over each transport: app and proc
    from the tag in the message (C{syslog} and C{-} without one), the
    sender's address as host, the receive time, the level of the PRI, and
    a traceback kept in its record.
    """

    def setUp(self) -> None:
        self.udp = freeUDPPort()
        self.server = Server(self, "--syslog-udp", f"127.0.0.1:{self.udp}")
        self.stream = self.server.subscribe("format=json&app=" + quote("^(pyapp|pyident|syslog)$"))
        self.addCleanup(self.stream.close)
        self.server.subscribed(1)

    def log(self, port: int, socktype: str) -> None:
        """
        Run L{SCRIPT} against C{port}; check what it published.
        """
        before = time.time()
        result = runPython(
            SCRIPT.replace("PORT", str(port)).replace("SOCKTYPE", f"socket.{socktype}")
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        sent = json.loads(result.stdout)
        pid = str(sent["pid"])
        lines = sent["exception"].splitlines()
        self.assertEqual(lines[:2], ["checkout failed", "Traceback (most recent call last):"])
        self.assertEqual(lines[-1], "KeyError: 'sku-42'")
        got = records(self.stream, 8)
        after = time.time()
        for record in got:
            when = datetime.fromisoformat(record.pop("time")).timestamp()
            self.assertTrue(before - 0.001 <= when <= after, (before, record, after))
            self.assertIsInstance(record.pop("seq"), int)
        expected = [
            ("pyapp", pid, "debugging", "debug"),
            ("pyapp", pid, "started", "info"),
            ("pyapp", pid, "low stock", "warn"),
            ("pyapp", pid, "payment refused", "error"),
            ("pyapp", pid, "out of memory", "fatal"),
            ("pyident", "-", "with an ident", "error"),
            ("syslog", "-", "no tag: none at all", "warn"),
            ("pyapp", pid, sent["exception"], "error"),
        ]
        wanted = [
            {"app": app, "proc": proc, "host": "127.0.0.1", "log": text, "level": level}
            for app, proc, text, level in expected
        ]
        # Each handler has its own socket: the order holds within each.
        self.assertEqual(sorted(got, key=repr), sorted(wanted, key=repr))
        self.assertEqual(
            [record for record in got if record["app"] == "pyapp"],
            [record for record in wanted if record["app"] == "pyapp"],
        )

    def test_udp(self) -> None:
        """
        Over UDP, one datagram per record.
        """
        self.log(self.udp, "SOCK_DGRAM")

    def test_tcp(self) -> None:
        """
        Over TCP, each record ended by a NUL on one connection per handler,
        the traceback's lines in its one record; nothing was malformed or
        cut.
        """
        self.log(self.server.publishPort, "SOCK_STREAM")
        waitFor(
            lambda: metrics(self.server)[("logio_publishers", ())] == 0,
            what="the publishers to leave",
        )
        self.server.stop()
        # A publisher whose input was changed on the way says so as it leaves.
        self.assertEqual(
            [line for line in self.server.log().splitlines() if "Publisher " in line], []
        )


class GoLogSyslogTests(SynchronousTestCase):
    """
    The bytes Go's log/syslog sends (Go is not needed to send them).
    """

    def test_tcpAndUDP(self) -> None:
        """
        An RFC 3339 time in an RFC 3164 header, newline-framed over TCP
        and in a datagram: app, proc, host and time from the header, the
        level from the PRI.
        """
        udp = freeUDPPort()
        server = Server(self, "--syslog-udp", f"127.0.0.1:{udp}")
        stream = server.subscribe("format=json&app=goapp")
        self.addCleanup(stream.close)
        server.subscribed(1)
        server.publish(b"<27>2026-12-05T00:16:01Z vm goapp[29330]: msg\n").close()
        runPython(
            "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto("
            f"b'<30>2026-12-05T00:16:01.123456+01:00 vm goapp[29330]: over udp', "
            f"('127.0.0.1', {udp}))"
        ).check_returncode()
        got = records(stream, 2)
        for record in got:
            record.pop("seq")
        common = {"app": "goapp", "proc": "29330", "host": "vm"}
        self.assertEqual(
            got,
            [
                {**common, "time": "2026-12-05T00:16:01.000Z", "log": "msg", "level": "error"},
                {
                    **common,
                    "time": "2026-12-04T23:16:01.123Z",
                    "log": "over udp",
                    "level": "info",
                },
            ],
        )
