"""
End-to-end tests of the durable store, against C{twistd -n logio --store}
in a temporary folder: what a restart keeps, after SIGTERM and after
C{kill -9} under load, and event ids that stay good across restarts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import threading
import time
from datetime import datetime

from twisted.trial.unittest import SynchronousTestCase

from logio.store import DATABASE
from tests.support.server import Server, get, metrics
from tests.support.waiting import TIMEOUT, waitFor


def records(server: Server, query: str = "") -> list[dict[str, object]]:
    """
    Every record the server replays for C{query}, as JSON objects.
    """
    body = get(server, f"/?follow=0&format=json&{query}").read()
    return [json.loads(line) for line in body.splitlines()]


class RestartTests(SynchronousTestCase):
    """
    A server restarted on the same store serves what it held.
    """

    def setUp(self) -> None:
        self.store = self.mktemp()

    def start(self) -> Server:
        return Server(self, "--store", self.store)

    def test_sigterm(self) -> None:
        """
        After SIGTERM and a restart, C{tail} returns every record from
        before with its seq, time, text and level; an SSE client's
        C{Last-Event-ID} from before resumes with no gap and no duplicate;
        numbering goes on.
        """
        first = self.start()
        first.publish(b"app=st\n" + b"".join(b"ERROR n %d\n" % n for n in range(1000))).close()
        waitFor(lambda: len(records(first, "app=st&tail=5000")) == 1000, what="1000 records held")
        before = records(first, "app=st&tail=5000")
        events = get(first, "/?format=sse&tail=1000&follow=0").read().decode()
        ids = re.findall(r"^id: (\S+)$", events, re.MULTILINE)
        self.assertEqual(len(ids), 1000)
        self.assertEqual(first.stop(), -signal.SIGTERM)
        self.assertIn("1000 records stored this run, 0 not stored", first.log())
        second = self.start()
        second.waitForLog(": 1000 records recovered")
        self.assertEqual(records(second, "app=st&tail=5000"), before)
        self.assertEqual({o["level"] for o in before}, {"error"})
        second.publish(b"app=st\nafter\n").close()
        waitFor(lambda: len(records(second, "app=st&tail=5000")) == 1001, what="the new record")
        resumed = get(second, "/?format=sse&follow=0", {"Last-Event-ID": ids[499]}).read()
        data = [
            json.loads(line[6:])
            for line in resumed.decode().splitlines()
            if line.startswith("data: ")
        ]
        self.assertEqual([o["seq"] for o in data], list(range(501, 1002)))
        self.assertEqual(data[-1]["log"], "after")
        self.assertNotIn(b"earlier run", resumed)
        waitFor(
            lambda: metrics(second)[("logio_store_records", ())] == 1001,
            what="the new record stored",
        )
        counted = metrics(second)
        self.assertGreater(counted[("logio_store_bytes", ())], 1000 * 10)
        self.assertEqual(counted[("logio_store_records_unstored_total", ())], 0)
        self.assertEqual(
            counted[("logio_store_oldest_time_seconds", ())],
            datetime.fromisoformat(before[0]["time"].replace("Z", "+00:00")).timestamp(),
        )

    def test_kill9UnderLoad(self) -> None:
        """
        After C{kill -9} in the middle of publishing, the store is intact:
        the records it recovered are a prefix of what was published, with
        no gap, the log's count agrees, and the records lost (those a live
        subscriber got that were not recovered) are at most about one
        second's worth.
        """
        first = self.start()
        live = first.subscribe("app=k9")
        first.subscribed(1)
        stop = threading.Event()

        def publish() -> None:
            sock = socket.create_connection(("127.0.0.1", first.publishPort), timeout=TIMEOUT)
            sock.sendall(b"app=k9\n")
            sent = 0
            try:
                # About 100,000 lines a second: a steady load, not a flood.
                while not stop.wait(0.001):
                    sock.sendall(b"".join(b"n %d\n" % (sent + i) for i in range(100)))
                    sent += 100
            except OSError:
                pass

        database = os.path.join(self.store, DATABASE)

        def stored() -> int:
            connection = sqlite3.connect(database)
            try:
                return int(
                    connection.execute("SELECT COALESCE(SUM(count), 0) FROM batches").fetchone()[0]
                )
            finally:
                connection.close()

        publisher = threading.Thread(target=publish, daemon=True)
        began = time.monotonic()
        publisher.start()
        waitFor(lambda: stored() >= 10000, what="10000 records stored")
        committed = stored()
        waitFor(lambda: time.monotonic() - began > 2, what="two seconds of load")
        first.process.kill()
        first.process.wait(TIMEOUT)
        elapsed = time.monotonic() - began
        stop.set()
        publisher.join(TIMEOUT)
        got = [
            int(line.rsplit(b" ", 1)[1]) for line in live.readToEnd().splitlines() if b" n " in line
        ]
        delivered = got[-1] + 1
        connection = sqlite3.connect(database)
        self.assertEqual(connection.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        batches = connection.execute("SELECT first, count, records FROM batches ORDER BY first")
        expected = 1
        for first, count, packed in batches:
            # Every record is there, in order, each the line of its seq.
            self.assertEqual(first, expected)
            texts = [text for _, text, _ in json.loads(packed)]
            self.assertEqual(texts, [f"n {seq - 1}" for seq in range(first, first + count)])
            expected += count
        connection.close()
        second = self.start()
        second.waitForLog(" records recovered")
        found = re.search(r": (\d+) records recovered", second.log())
        assert found is not None, second.log()
        recovered = int(found.group(1))
        self.assertEqual(recovered, expected - 1)
        self.assertGreaterEqual(recovered, committed)
        newest = records(second, "app=k9&tail=100")[-100:]
        self.assertEqual([o["seq"] for o in newest], list(range(recovered - 99, recovered + 1)))
        self.assertEqual(newest[-1]["log"], f"n {recovered - 1}")
        lost = delivered - recovered
        self.assertLessEqual(lost, delivered / elapsed * 1.0 + 10000, (lost, delivered, elapsed))
