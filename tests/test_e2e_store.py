"""
End-to-end tests of the durable store, against C{twistd -n logio --store}
in a temporary folder: what a restart keeps, after SIGTERM and after
C{kill -9} under load, and event ids that stay good across restarts.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from datetime import datetime

from twisted.trial.unittest import SynchronousTestCase

from logio.packing import unpack
from logio.storedb import DATABASE
from tests.support.processes import environment
from tests.support.server import Server, get, logioArguments, metrics, twistd
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
        # Memory holds 100 records: the rest come back from disk.
        return Server(self, "--store", self.store, "--history", "100")

    def test_sigterm(self) -> None:
        """
        After SIGTERM and a restart, C{tail} returns every record from
        before with its seq, time, text and level; an SSE client's
        C{Last-Event-ID} from before resumes with no gap and no duplicate;
        numbering goes on.
        """
        first = self.start()
        first.publish(b"app=early\none\ntwo\n").close()
        waitFor(lambda: len(records(first, "app=early&tail=10")) == 2, what="early records")
        early = records(first, "app=early&tail=10")
        first.publish(b"app=st\n" + b"".join(b"ERROR n %d\n" % n for n in range(1000))).close()
        waitFor(lambda: len(records(first, "app=st&tail=5000")) == 1000, what="1000 records held")
        before = records(first, "app=st&tail=5000")
        events = get(first, "/?format=sse&tail=1000&follow=0").read().decode()
        ids = re.findall(r"^id: (\S+)$", events, re.MULTILINE)
        self.assertEqual(len(ids), 1000)
        self.assertEqual(first.stop(), -signal.SIGTERM)
        self.assertIn("1002 records stored this run, 0 not stored", first.log())
        second = self.start()
        second.waitForLog(": 1002 records recovered")
        self.assertEqual(records(second, "app=st&tail=5000"), before)
        topics = {t["app"]: t for t in json.loads(get(second, "/topics").read())}
        self.assertEqual((topics["early"]["records"], topics["early"]["publishers"]), (2, 0))
        self.assertEqual(topics["st"]["records"], 1000)
        self.assertEqual(topics["st"]["last"], before[-1]["time"])
        self.assertEqual({o["level"] for o in before}, {"error"})
        second.publish(b"app=st\nafter\n").close()
        waitFor(lambda: len(records(second, "app=st&tail=5000")) == 1001, what="the new record")
        resumed = get(second, "/?format=sse&follow=0", {"Last-Event-ID": ids[499]}).read()
        data = [
            json.loads(line[6:])
            for line in resumed.decode().splitlines()
            if line.startswith("data: ")
        ]
        self.assertEqual([o["seq"] for o in data], list(range(503, 1004)))
        self.assertEqual(data[-1]["log"], "after")
        self.assertNotIn(b"earlier run", resumed)
        waitFor(
            lambda: metrics(second)[("logio_store_records", ())] == 1003,
            what="the new record stored",
        )
        counted = metrics(second)
        self.assertGreater(counted[("logio_store_bytes", ())], 1000 * 10)
        self.assertEqual(counted[("logio_store_records_unstored_total", ())], 0)
        self.assertEqual(
            counted[("logio_store_oldest_time_seconds", ())],
            datetime.fromisoformat(early[0]["time"].replace("Z", "+00:00")).timestamp(),
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
            texts = [text for _, text, _ in unpack(packed, count)]
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


class DeepReadTests(SynchronousTestCase):
    """
    Replays that reach past the records held in memory, into the store.
    """

    def setUp(self) -> None:
        self.server = Server(self, "--store", self.mktemp(), "--history", "100")
        lines = b"".join(
            b"%s n %d\n" % (b"ERROR" if n % 10 == 0 else b"INFO", n) for n in range(5000)
        )
        self.server.publish(b"app=deep\n" + lines).close()
        waitFor(
            lambda: metrics(self.server)[("logio_store_records", ())] == 5000,
            what="5000 records stored",
        )

    def test_tail(self) -> None:
        """
        C{tail=N} past the 100 records in memory returns the newest N, read
        from disk, in order, in every format; with filters, the newest N
        that match.
        """
        held = records(self.server, "app=deep&tail=1000")
        self.assertEqual([o["seq"] for o in held], list(range(4001, 5001)))
        self.assertEqual(held[0]["log"], "ERROR n 4000")
        errors = records(self.server, "app=deep&tail=300&level=error")
        self.assertEqual(
            [o["log"] for o in errors], [f"ERROR n {n}" for n in range(2000, 5000, 10)]
        )
        logged = records(self.server, "app=deep&tail=3&log=n%201%5B0-9%5D%24")
        self.assertEqual([o["log"] for o in logged], ["INFO n 17", "INFO n 18", "INFO n 19"])
        text = get(self.server, "/?app=deep&tail=2000&follow=0").read().splitlines()
        self.assertEqual(len(text), 2000)
        self.assertTrue(text[0].endswith(b": ERROR n 3000"))

    def test_resume(self) -> None:
        """
        An SSE client resuming from an id whose records left memory gets
        every record after it from disk, then the ones in memory, then live
        ones, with no gap and no duplicate.
        """
        epoch = re.search(r"ids (\d+)-", self.server.log())
        assert epoch is not None
        stream = self.server.subscribe(f"app=deep&format=sse&last_event_id={epoch.group(1)}-10")
        self.server.publish(b"app=deep\nlive\n").close()
        body = stream.readUntil(lambda body: b'"live"' in body)
        seqs = [int(s) for s in re.findall(rb'"seq": (\d+)', body)]
        self.assertEqual(seqs, list(range(11, 5002)))
        self.assertNotIn(b"no longer in history", body)
        stream.close()

    def test_resumeFromAnotherStore(self) -> None:
        """
        An id of another store (or of a run without one) gets the notice,
        then the records held in memory only: never a read of the whole
        store.
        """
        body = get(self.server, "/?app=deep&format=sse&follow=0&last_event_id=1-10").read()
        notices = re.findall(rb"^event: notice\ndata: (.*)$", body, re.MULTILINE)
        self.assertEqual(len(notices), 1)
        self.assertIn(b"earlier run of this server", notices[0])
        seqs = [int(s) for s in re.findall(rb'"seq": (\d+)', body)]
        self.assertEqual(seqs, list(range(4901, 5001)))

    def test_timeRange(self) -> None:
        """
        C{since} reaches every stored record in the range, not only those in
        memory.
        """
        held = records(self.server, "app=deep&since=1h")
        self.assertEqual([o["seq"] for o in held], list(range(1, 5001)))

    def test_maxQueries(self) -> None:
        """
        Reads from disk beyond C{--max-queries} at once get a 503; a client
        that leaves mid-read frees its place.
        """
        server = Server(self, "--store", self.mktemp(), "--history", "10", "--max-queries", "1")
        server.publish(b"app=q\n" + b"x\n" * 200000).close()
        waitFor(
            lambda: metrics(server)[("logio_store_records", ())] == 200000,
            what="200000 records stored",
        )
        # Never read: its replay fills the socket and the queue, and waits.
        slow = socket.create_connection(("127.0.0.1", server.subscribePort), timeout=TIMEOUT)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b"GET /?app=q&since=1h&follow=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        waitFor(
            lambda: get(server, "/?app=q&tail=100&follow=0").status == 503,
            what="a second read refused",
        )
        slow.close()
        waitFor(
            lambda: get(server, "/?app=q&tail=100&follow=0").status == 200,
            what="the place freed",
        )


class SearchTests(SynchronousTestCase):
    """
    A long read from disk never holds the server up.
    """

    def test_liveDuringSearch(self) -> None:
        """
        While a C{log=} search reads a million stored records, a live
        subscriber of another app still gets each record within a generous
        bound (the read goes a batch at a time between other work), and the
        search finds what it looks for.
        """
        server = Server(self, "--store", self.mktemp())
        sock = socket.create_connection(("127.0.0.1", server.publishPort), timeout=TIMEOUT)
        sock.sendall(b"app=big\n")
        for first in range(0, 1_000_000, 10_000):
            sock.sendall(b"".join(b"GET /items/%d 200\n" % n for n in range(first, first + 10_000)))
        sock.close()
        waitFor(
            lambda: metrics(server)[("logio_store_records", ())] == 1_000_000,
            timeout=120,
            what="a million records stored",
        )
        live = server.subscribe("app=^beat$")
        server.subscribed(1)
        found: list[bytes] = []
        searching = threading.Thread(
            target=lambda: found.append(
                get(server, "/?app=^big$&since=1d&follow=0&log=items/4242%20").read()
            ),
            daemon=True,
        )
        began = time.monotonic()
        searching.start()
        beats = server.publish(b"app=beat\n")
        worst = 0.0
        count = 0
        while searching.is_alive() or count < 5:
            count += 1
            sent = time.monotonic()
            beats.sendall(b"beat %d\n" % count)
            live.readUntil(lambda body, n=count: b"beat %d\n" % n in body)
            worst = max(worst, time.monotonic() - sent)
        searching.join(TIMEOUT)
        beats.close()
        self.assertEqual(len(found[0].splitlines()), 1, found[0][:200])
        self.assertIn(b"GET /items/4242 200", found[0])
        # Generous: the box may be busy; a search that held the reactor
        # would hold every beat for the whole search.
        self.assertLess(worst, max(1.0, (time.monotonic() - began) / 2), (worst, count))


def _limitFileSize() -> None:
    """
    In the server's process, before it runs: files it writes may not grow
    past 2 MiB, and writing past that fails (C{EFBIG}) instead of killing
    it.  The hard limit stays, so the test can lift the bound again.
    """
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024 * 1024, hard))


class FaultTests(SynchronousTestCase):
    """
    A disk that fails while the server runs, and a store folder the server
    cannot use when it starts.
    """

    def test_fullDisk(self) -> None:
        """
        When the store's files cannot grow (as on a full disk), the server
        logs it once, streams live records on, and counts the records not
        stored in C{/metrics}; when they can grow again, storing resumes,
        and a restart finds every record that was stored, intact.
        """
        store = self.mktemp()
        server = Server(self, "--store", store, "--history", "100", preexec=_limitFileSize)
        live = server.subscribe("app=full")
        server.subscribed(1)
        line = b"x" * 100
        published = 0
        publisher = server.publish(b"app=full\n")
        while metrics(server)[("logio_store_records_unstored_total", ())] == 0:
            # 100 KB a round, until the files reach the bound.
            publisher.sendall(b"".join(b"%d %s\n" % (published + i, line) for i in range(1000)))
            published += 1000
            self.assertLess(published, 200_000, "the bound was never reached")
            live.readUntil(lambda body, n=published - 1: b" %d x" % n in body)
        server.waitForLog("records could not be stored")
        # Live records go on while the disk is full.
        publisher.sendall(b"during\n")
        live.readUntil(lambda body: b": during\n" in body)
        published += 1

        def counted() -> tuple[int, int]:
            full = metrics(server)
            return (
                int(full[("logio_store_records", ())]),
                int(full[("logio_store_records_unstored_total", ())]),
            )

        # Every record is either stored or counted as not stored.
        waitFor(lambda: sum(counted()) == published, what="every record stored or counted")
        stored, unstored = counted()
        resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        # Storing resumes: each write now goes through.
        publisher.sendall(b"".join(b"after %d\n" % n for n in range(500)))
        publisher.close()
        waitFor(
            lambda: metrics(server)[("logio_store_records", ())] == stored + 500,
            what="storing to resume",
        )
        self.assertEqual(metrics(server)[("logio_store_records_unstored_total", ())], unstored)
        self.assertEqual(server.log().count("records could not be stored"), 1, server.log())
        self.assertEqual(server.stop(), -signal.SIGTERM)
        connection = sqlite3.connect(os.path.join(store, DATABASE))
        self.assertEqual(connection.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        connection.close()
        again = Server(self, "--store", store, "--history", "100")
        again.waitForLog(f": {stored + 500} records recovered")
        newest = records(again, "app=full&tail=1")
        self.assertEqual(newest[0]["log"], "after 499")

    def refused(self, *options: str) -> str:
        """
        Run C{twistd -n logio} with C{options}, expecting it to refuse to
        start: its output.
        """
        done = subprocess.run(
            [twistd(), *logioArguments(*options)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment(),
            timeout=TIMEOUT * 3,
        )
        self.assertNotEqual(done.returncode, 0)
        return done.stdout.decode("utf-8", "replace")

    def test_unusableFolder(self) -> None:
        """
        A C{--store} the server cannot make a folder of stops it at start,
        with a line that names it and says why.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a folder\n")
        output = self.refused("--store", path)
        self.assertIn(f"--store {path}: cannot use it: ", output)
        self.assertNotIn("Traceback", output)

    def test_otherFormat(self) -> None:
        """
        A store written in another format is refused at start with a line
        that says which, and it is left as it was.
        """
        store = self.mktemp()
        os.makedirs(store)
        path = os.path.join(store, DATABASE)
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        connection.execute("INSERT INTO meta VALUES ('format', '99'), ('id', '1')")
        connection.commit()
        connection.close()
        with open(path, "rb") as f:
            before = f.read()
        output = self.refused("--store", store)
        self.assertIn(f"--store {store}: it holds a store of format '99'", output)
        self.assertNotIn("Traceback", output)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)
