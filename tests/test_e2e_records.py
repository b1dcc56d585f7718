"""
End-to-end tests of records through the real C{twistd -n logio}: sequence
numbers, history replay (C{tail}, C{follow=0}), JSON lines, server-sent
events with resume, and the reserved paths of the routed root.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import threading
from typing import Iterator

import sseclient
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.payloads import record, topic
from tests.support.server import Server, get, metrics
from tests.support.waiting import TIMEOUT, waitFor


def recordsIn(server: Server) -> float:
    return sum(v for (name, _), v in metrics(server).items() if name == "logio_records_in_total")


def events(response: http.client.HTTPResponse) -> Iterator[sseclient.Event]:
    """
    The events of an SSE response, parsed by a real SSE client library.
    """
    chunks = iter(lambda: response.read1(65536), b"")
    return iter(sseclient.SSEClient(chunks).events())


class HistoryTests(SynchronousTestCase):
    """
    C{tail} and C{follow} against a real server.
    """

    def setUp(self) -> None:
        # Queues that may hold everything: a test that reads late loses nothing.
        self.server = Server(self, "--buffer", "200000", "--buffer-bytes", str(64 << 20))

    def test_tailWhilePublishing(self) -> None:
        """
        C{tail=N} while four publishers send: the replay and the live stream
        join with no gap and no duplicate (every seq once, in order).
        """
        count = 20000
        names = ("a", "b", "c", "d")

        def send(name: str) -> None:
            body = b"".join(record(f"{name} {i:06d}\n") for i in range(count))
            self.server.publish(topic("seq", name) + body).close()

        threads = [threading.Thread(target=send, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        waitFor(lambda: recordsIn(self.server) >= 5000, what="records to be published")
        stream = self.server.subscribe("app=seq&tail=3000&format=json")
        for thread in threads:
            thread.join()
        total = count * len(names)

        def complete(body: bytes) -> bool:
            return body.endswith(b"\n") and json.loads(body.rsplit(b"\n", 2)[-2])["seq"] == total

        body = stream.readUntil(complete, timeout=60)
        objects = [json.loads(line) for line in body.splitlines()]
        self.assertNotIn("dropped", objects[0])
        seqs = [o["seq"] for o in objects]
        self.assertEqual(seqs, list(range(seqs[0], total + 1)))
        self.assertGreaterEqual(len(seqs), 3000)
        # Each publisher's records in its own order, up to its last.
        for name in names:
            mine = [int(o["log"].split()[1]) for o in objects if o["proc"] == name]
            self.assertEqual(mine, list(range(count - len(mine), count)))

    def test_noFollow(self) -> None:
        """
        C{follow=0} returns the matching records history holds and ends
        with the final chunk; C{curl} prints them and exits 0.
        """
        self.server.publish(
            topic("myapp", "web") + b"".join(record(f"{i}\n") for i in range(5))
        ).close()
        self.server.publish(topic("other", "web") + record("not me\n")).close()
        waitFor(lambda: recordsIn(self.server) == 6, what="records in")
        stream = self.server.subscribe("app=myapp&tail=3&follow=0")
        body = stream.readToEnd()
        self.assertTrue(stream.ended)
        # Then the server closes the connection.
        self.assertEqual(stream.sock.recv(100), b"")
        self.assertEqual(
            [line.rsplit(b" ", 1)[1] for line in body.splitlines()], [b"2", b"3", b"4"]
        )
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed")
        result = subprocess.run(
            [curl, "-sS", f"http://127.0.0.1:{self.server.subscribePort}/?tail=100&follow=0"],
            capture_output=True,
            timeout=TIMEOUT,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(result.stdout.splitlines()), 6)


class JSONTests(SynchronousTestCase):
    """
    JSON lines from the real server.
    """

    def test_roundTrip(self) -> None:
        """
        Objects parse and round-trip unicode, a lone surrogate (as C{?}),
        quotes, control characters and a whole traceback as one object.
        """
        server = Server(self)
        stream = server.subscribe("format=json")
        self.assertEqual(stream.headers["content-type"], "application/x-ndjson")
        traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad\n'
        texts = ["héllo € 😀", "lone \ud800 surrogate", 'say "hi"\t\\ \x01', traceback]
        server.publish(topic("myapp", "web", "h1") + b"".join(record(t) for t in texts)).close()
        objects = [json.loads(line) for line in stream.lines(len(texts))]
        self.assertEqual(
            [o["log"] for o in objects],
            ["héllo € 😀", "lone ? surrogate", 'say "hi"\t\\ \x01', traceback[:-1]],
        )
        self.assertEqual(
            {k: v for k, v in objects[0].items() if k != "log"},
            {
                "seq": 1,
                "time": "2016-12-06T22:14:21.448Z",
                "app": "myapp",
                "proc": "web",
                "host": "h1",
            },
        )
        self.assertEqual([o["seq"] for o in objects], [1, 2, 3, 4])

    def test_accept(self) -> None:
        """
        C{curl -H 'Accept: application/x-ndjson'} gets JSON lines too.
        """
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed")
        server = Server(self)
        server.publish(topic("myapp", "web") + record("one\n")).close()
        waitFor(lambda: recordsIn(server) == 1, what="the record")
        result = subprocess.run(
            [curl, "-sS", "-H", "Accept: application/x-ndjson",
             f"http://127.0.0.1:{server.subscribePort}/?tail=1&follow=0"],
            capture_output=True, timeout=TIMEOUT,
        )  # fmt: skip
        self.assertEqual(json.loads(result.stdout)["log"], "one")


class ServerSentEventsTests(SynchronousTestCase):
    """
    Server-sent events from the real server, read by a real SSE parser.
    """

    def publish(self, server: Server, first: int, last: int) -> None:
        body = b"".join(record(f"n {i}\n") for i in range(first, last))
        server.publish(topic("myapp", "web") + body).close()

    def test_resumeAfterDisconnect(self) -> None:
        """
        A client that drops in mid-stream and reconnects with
        C{Last-Event-ID} gets every record it missed, once, in order.
        """
        server = Server(self)
        response = get(server, "/?format=sse&app=myapp")
        self.assertEqual(response.getheader("content-type"), "text/event-stream; charset=utf-8")
        self.publish(server, 0, 500)
        stream = events(response)
        got = [next(stream) for _ in range(200)]
        response.close()
        lastId = got[-1].id
        self.publish(server, 500, 1000)
        waitFor(lambda: recordsIn(server) == 1000, what="every record in")
        resumed = events(get(server, "/?format=sse&app=myapp", {"Last-Event-ID": lastId}))
        self.publish(server, 1000, 1100)
        got += [next(resumed) for _ in range(900)]
        logs = [json.loads(event.data)["log"] for event in got]
        self.assertEqual(logs, [f"n {i}" for i in range(1100)])
        start = lastId.split("-")[0]
        self.assertEqual([event.id for event in got], [f"{start}-{i}" for i in range(1, 1101)])
        self.assertEqual({event.event for event in got}, {"message"})

    def test_missedCount(self) -> None:
        """
        Resuming from an id that history no longer reaches: an C{event:
        dropped} with the exact count, then what history still holds.
        """
        server = Server(self, "--history", "100")
        response = get(server, "/?format=sse")
        self.publish(server, 0, 10)
        stream = events(response)
        got = [next(stream) for _ in range(3)]
        response.close()
        self.publish(server, 10, 500)
        waitFor(lambda: recordsIn(server) == 500, what="every record in")
        resumed = events(get(server, f"/?last_event_id={got[-1].id}&format=sse"))
        dropped = next(resumed)
        self.assertEqual(dropped.event, "dropped")
        notice = json.loads(dropped.data)
        self.assertEqual(notice["dropped"], 500 - 100 - 3)
        self.assertIn("397 records after event id", notice["notice"])
        rest = [json.loads(next(resumed).data)["seq"] for _ in range(100)]
        self.assertEqual(rest, list(range(401, 501)))

    def test_idFromEarlierRun(self) -> None:
        """
        After a restart, an id of the earlier run is answered with a notice,
        not taken as a seq of the new one; every record of the new run came
        after it, so they are replayed, and the live ones follow.
        """
        server = Server(self)
        response = get(server, "/?format=sse")
        self.publish(server, 0, 3)
        oldId = [next(events(response)) for _ in range(1)][-1].id
        response.close()
        server.stop()
        server = Server(self)
        self.publish(server, 0, 3)
        waitFor(lambda: recordsIn(server) == 3, what="records in")
        resumed = events(get(server, "/?format=sse", {"Last-Event-ID": oldId}))
        notice = next(resumed)
        self.assertEqual(notice.event, "notice")
        self.assertIn("earlier run of this server", json.loads(notice.data)["notice"])
        replayed = [json.loads(next(resumed).data)["log"] for _ in range(3)]
        self.assertEqual(replayed, ["n 0", "n 1", "n 2"])
        self.publish(server, 3, 4)
        self.assertEqual(json.loads(next(resumed).data)["log"], "n 3")


class RootTests(SynchronousTestCase):
    """
    The reserved paths of the real server, and its refusals.
    """

    def setUp(self) -> None:
        self.server = Server(self)

    def test_healthz(self) -> None:
        """
        C{/healthz} answers 200 C{ok} and ends (a probe does not hang).
        """
        response = get(self.server, "/healthz")
        self.assertEqual((response.status, response.read()), (200, b"ok\n"))

    def test_favicon(self) -> None:
        """
        C{/favicon.ico} is a 404, not a stream.
        """
        response = get(self.server, "/favicon.ico")
        self.assertEqual(response.status, 404)
        response.read()

    def test_unknownParameter(self) -> None:
        """
        C{?ap=x} is a 400 naming the parameter and the known ones.
        """
        stream = self.server.subscribe("ap=x")
        self.assertEqual(stream.status, 400)
        body = stream.readUntil(lambda b: b.endswith(b"\n"))
        self.assertIn(b"'ap'", body)
        self.assertIn(
            b"app proc host log level since until tail follow format ansi last_event_id", body
        )

    def test_topicsAndMetrics(self) -> None:
        """
        C{/topics} lists what was published; C{/metrics} counts records in
        by protocol, lines out by format, publishers and subscribers.
        """
        text = self.server.subscribe("app=myapp")
        jsonStream = self.server.subscribe("app=myapp&format=json")
        self.server.subscribed(2)
        held = self.server.publish(topic("myapp", "web") + record("a\n") + record("b\n"))
        publisher = socket.create_connection(
            ("127.0.0.1", self.server.publishPort), timeout=TIMEOUT
        )
        publisher.sendall(b"app=myapp&proc=cron&host=h\nc\n")
        text.lines(3)
        jsonStream.lines(3)
        topics = json.loads(get(self.server, "/topics").read())
        self.assertEqual(
            [(t["proc"], t["records"], t["publishers"]) for t in topics],
            [("cron", 1, 1), ("web", 2, 1)],
        )
        self.assertEqual(topics[1]["last"], "2016-12-06T22:14:21.448Z")
        samples = metrics(self.server)
        self.assertEqual(samples[("logio_records_in_total", (("protocol", "seed"),))], 2)
        self.assertEqual(samples[("logio_records_in_total", (("protocol", "text"),))], 1)
        self.assertEqual(samples[("logio_lines_out_total", (("format", "text"),))], 3)
        self.assertEqual(samples[("logio_lines_out_total", (("format", "json"),))], 3)
        self.assertEqual(samples[("logio_publishers", ())], 2)
        self.assertEqual(samples[("logio_subscribers", ())], 2)
        self.assertEqual(samples[("logio_history_records", ())], 3)
        held.close()
        publisher.close()
        waitFor(
            lambda: metrics(self.server)[("logio_publishers", ())] == 0, what="publishers to leave"
        )
