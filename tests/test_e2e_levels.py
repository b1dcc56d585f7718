"""
End-to-end tests of record levels, against C{twistd -n logio} and the real
sources: util-linux C{logger} (syslog severities), the OpenTelemetry Python
SDK exporting OTLP/HTTP protobuf (severities and C{logger.exception}'s
stack trace), C{curl} posting NDJSON, and the text protocol (level words).
Each is read back with C{curl} in every format, with and without
C{level=}.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Optional

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.http import sseEvents
from tests.support.processes import curl, runCurl, runPython
from tests.support.server import Server
from tests.support.waiting import TIMEOUT

#: What the OpenTelemetry SDK logs: a warning, an info and an exception.
OTEL_SCRIPT = """
import logging, sys
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk.resources import Resource

provider = LoggerProvider(resource=Resource.create({"service.name": "lv-otel"}))
provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=sys.argv[1])))
log = logging.getLogger("shop")
log.setLevel(logging.DEBUG)
log.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))
log.warning("low stock")
log.info("started")
try:
    {}["sku-42"]
except KeyError:
    log.exception("checkout failed")
provider.shutdown()
"""

#: Every record published, by app and first line of text, and its level.
EXPECTED: dict[tuple[str, str], Optional[str]] = {
    ("lv-text", "ERROR boom"): "error",
    ("lv-text", "INFO fine"): "info",
    ("lv-text", "2026-12-05T01:02:03Z WARN careful"): "warn",
    ("lv-text", "\x1b[33mWARNING\x1b[0m coloured"): "warn",
    ("lv-text", "[CRITICAL] pager"): "fatal",
    ("lv-text", "ERRORS are words too"): None,
    ("lv-text", "plain"): None,
    ("lv-ndjson", "disk full"): "error",
    ("lv-ndjson", "hello"): "info",
    ("lv-ndjson", "pino says"): "error",
    ("lv-ndjson", "odd level"): None,
    ("lv-syslog", "low disk"): "warn",
    ("lv-syslog", "ok"): "info",
    ("lv-syslog", "down"): "fatal",
    ("lv-syslog", "note"): "notice",
    ("lv-otel", "low stock"): "warn",
    ("lv-otel", "started"): "info",
    ("lv-otel", "checkout failed"): "error",
}
#: What C{level=warn} keeps.
WARN_AND_WORSE = {key for key, level in EXPECTED.items() if level in ("warn", "error", "fatal")}


def logger() -> str:
    found = shutil.which("logger")
    if found is None:
        raise SkipTest("logger is not installed")
    return found


class LevelTests(SynchronousTestCase):
    """
    Records from each source keep their level; C{level=} keeps a level and
    worse, live and in replay, in every format; the text output is as it
    always was.
    """

    def setUp(self) -> None:
        try:
            import opentelemetry.exporter.otlp.proto.http  # noqa: F401
            import opentelemetry.sdk  # noqa: F401
        except ImportError:
            if os.environ.get("CI"):
                raise
            raise SkipTest("the OpenTelemetry SDK is not installed") from None
        self.server = Server(self)
        self.base = f"http://127.0.0.1:{self.server.subscribePort}"
        self.everything = self.server.subscribe("app=^lv-&format=json")
        self.warnings = self.server.subscribe("app=^lv-&format=sse&level=warn")
        self.server.subscribed(2)
        self.publishAll()
        self.everything.lines(len(EXPECTED))

    def publishAll(self) -> None:
        texts = [text for app, text in EXPECTED if app == "lv-text"]
        self.server.publish(("app=lv-text\n" + "\n".join(texts) + "\n").encode()).close()
        ndjson = [
            {"app": "lv-ndjson", "log": "disk full", "level": "ERROR"},
            {"app": "lv-ndjson", "log": "hello", "level": "info"},
            {"app": "lv-ndjson", "log": "pino says", "level": 50},
            {"app": "lv-ndjson", "log": "odd level", "level": "verbose"},
        ]
        code, _ = runCurl(
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            "".join(json.dumps(record) + "\n" for record in ndjson),
            f"{self.base}/publish",
        )
        self.assertEqual(code, 200)
        for priority, text in (
            ("user.warning", "low disk"),
            ("user.info", "ok"),
            ("user.crit", "down"),
            ("user.notice", "note"),
        ):
            subprocess.run(
                [logger(), "--tcp", "--rfc5424", "-n", "127.0.0.1"]
                + ["-P", str(self.server.publishPort), "-t", "lv-syslog", "-p", priority, text],
                check=True,
                timeout=TIMEOUT,
            )
        result = runPython(OTEL_SCRIPT.replace("sys.argv[1]", repr(f"{self.base}/v1/logs")))
        self.assertEqual(result.returncode, 0, result.stderr)

    def get(self, query: str, app: str = "^lv-") -> str:
        code, body = runCurl(f"{self.base}/?app={app}&tail=100&follow=0&{query}")
        self.assertEqual(code, 200, body)
        return body

    def test_jsonCarriesLevels(self) -> None:
        """
        The JSON output has each record's level where its source gave one
        or its text starts with a level word, and no C{level} member
        otherwise; an exception logged with the OpenTelemetry SDK arrives
        with its stack trace as further lines.
        """
        objects = [json.loads(line) for line in self.get("format=json").splitlines()]
        levels = {(o["app"], o["log"].split("\n")[0]): o.get("level") for o in objects}
        self.assertEqual(levels, EXPECTED)
        (failed,) = [o["log"] for o in objects if o["log"].startswith("checkout failed")]
        lines = failed.split("\n")
        self.assertEqual(lines[1], "Traceback (most recent call last):")
        self.assertEqual(lines[-1], "KeyError: 'sku-42'")

    def test_levelFilterInEveryFormat(self) -> None:
        """
        C{level=warn} keeps warn, error and fatal, in text, JSON and SSE
        alike, in replay and live.
        """
        shown = {text.replace("\x1b", "\\u001b"): (app, text) for app, text in EXPECTED}
        texts = [line.split(": ", 1)[1] for line in self.get("level=warn").splitlines()]
        # A stack trace's lines are lines of its record: only first lines count.
        self.assertEqual({shown[text] for text in texts if text in shown}, WARN_AND_WORSE)
        self.assertIn("KeyError: 'sku-42'", texts)
        for query in ("format=json&level=warn", "format=json&level=WARNING"):
            objects = [json.loads(line) for line in self.get(query).splitlines()]
            self.assertEqual(
                {(o["app"], o["log"].split("\n")[0]) for o in objects}, WARN_AND_WORSE, query
            )
        # runCurl leaves out the body's last newline, which ends the last event.
        replayed = sseEvents(self.get("format=sse&level=warn").encode() + b"\n")
        live = sseEvents(
            self.warnings.readUntil(lambda body: body.count(b"data: ") >= len(WARN_AND_WORSE))
        )
        for events in (replayed, live):
            objects = [json.loads(event["data"]) for event in events]
            self.assertEqual({(o["app"], o["log"].split("\n")[0]) for o in objects}, WARN_AND_WORSE)
            self.assertTrue(all(o["level"] in ("warn", "error", "fatal") for o in objects))
        code, body = runCurl(f"{self.base}/?level=loud")
        self.assertEqual((code, body), (400, "unknown level 'loud': use one of " + LEVELS))

    def test_textUnchanged(self) -> None:
        """
        The text output shows no level, and colour sequences escaped, unless
        C{ansi=keep} asks for them raw: then each line that has any ends
        with a reset.
        """
        plain = self.get("", app="^lv-text$")
        self.assertEqual(
            [line.split(": ", 1)[1] for line in plain.splitlines()],
            [text.replace("\x1b", "\\u001b") for app, text in EXPECTED if app == "lv-text"],
        )
        coloured = subprocess.run(
            [curl(), "-s", f"{self.base}/?app=^lv-text$&tail=100&follow=0&ansi=keep"],
            capture_output=True,
            timeout=TIMEOUT,
        ).stdout.decode()
        self.assertIn(": \x1b[33mWARNING\x1b[0m coloured\x1b[0m\n", coloured)
        self.assertEqual(
            coloured.replace("\x1b", "\\u001b").replace("\\u001b[0m\n", "\n"), plain + "\n"
        )


LEVELS = "trace, debug, info, notice, warn, error, fatal"
