"""
End-to-end tests of time ranges, C{since} and C{until}, against C{twistd -n
logio}: records with their own times posted as NDJSON with C{curl}, read
back with C{curl} in each format and with C{logio tail}.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

from twisted.trial.unittest import SynchronousTestCase

from tests.support.http import sseEvents
from tests.support.processes import environment, logio, runCurl
from tests.support.server import Server
from tests.support.waiting import TIMEOUT

#: Minutes before now of the records published, and their texts.
AGES = {90: "an hour and a half ago", 30: "half an hour ago", 5: "five minutes ago", 0: "now"}


class TimeRangeTests(SynchronousTestCase):
    """
    C{since} and C{until}, absolute and relative, in every format.
    """

    def setUp(self) -> None:
        self.server = Server(self)
        self.base = f"http://127.0.0.1:{self.server.subscribePort}"
        now = datetime.now(timezone.utc)
        self.times = {age: now - timedelta(minutes=age) for age in AGES}
        body = "".join(
            json.dumps({"app": "tr", "time": self.times[age].isoformat(), "log": text}) + "\n"
            for age, text in AGES.items()
        )
        code, answer = runCurl(
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            body,
            f"{self.base}/publish",
        )
        self.assertEqual((code, json.loads(answer)["accepted"]), (200, len(AGES)))

    def get(self, query: str) -> str:
        code, body = runCurl(f"{self.base}/?app=^tr$&{query}")
        self.assertEqual(code, 200, body)
        return body

    def test_everyFormat(self) -> None:
        """
        A relative C{since} and an absolute C{until} select the same records
        in text, JSON and SSE; C{follow=0} ends the answer.
        """
        until = (self.times[5] + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = f"since=45m&until={until}&follow=0"
        wanted = [AGES[30], AGES[5]]
        text = self.get(query)
        self.assertEqual([line.split(": ", 1)[1] for line in text.splitlines()], wanted)
        objects = [json.loads(line) for line in self.get(query + "&format=json").splitlines()]
        self.assertEqual([o["log"] for o in objects], wanted)
        # runCurl leaves out the body's last newline, which ends the last event.
        events = sseEvents(self.get(query + "&format=sse").encode() + b"\n")
        self.assertEqual([json.loads(e["data"])["log"] for e in events], wanted)

    def test_badValue(self) -> None:
        """
        A value of neither form is a 400 naming the parameter.
        """
        code, body = runCurl(f"{self.base}/?since=last+week")
        self.assertEqual(code, 400)
        self.assertIn("since must be an RFC 3339 time", body)

    def test_tail(self) -> None:
        """
        C{logio tail --since 1h --until 1m} prints the range and exits.
        """
        result = subprocess.run(
            logio(
                "tail", "--since", "1h", "--until", "1m", f"127.0.0.1:{self.server.subscribePort}"
            ),
            capture_output=True,
            timeout=TIMEOUT,
            env=environment(),
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            [line.split(b": ", 1)[1] for line in result.stdout.splitlines()],
            [AGES[30].encode(), AGES[5].encode()],
        )
