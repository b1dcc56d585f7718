"""
End-to-end tests of cluster nodes: several C{twistd -n logio --cluster}
processes sharing one real C{redis-server}.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading

from twisted.trial.unittest import SynchronousTestCase

from tests.support.processes import curl, procStatus, terminate
from tests.support.redis import RedisServer
from tests.support.server import Server, Stream, get
from tests.support.waiting import TIMEOUT, waitFor


def node(testCase: SynchronousTestCase, redis: RedisServer, *options: str) -> Server:
    """
    A cluster node of C{redis}, joined.
    """
    server = Server(testCase, "--cluster", redis.url(), *options)
    server.waitForLog("Cluster redis://")
    server.waitForLog(": joined as ")
    return server


def sseEvents(body: bytes) -> list[tuple[str, dict[str, object]]]:
    """
    The C{(id, data)} of each record event of an SSE body.
    """
    return [
        (ident.decode(), json.loads(data))
        for ident, data in re.findall(rb"^id: (\S+)\ndata: (.*)$", body, re.MULTILINE)
    ]


class RelayTests(SynchronousTestCase):
    """
    A record published to any node reaches every matching subscriber on
    every node, once, in order, with the same id everywhere.
    """

    def setUp(self) -> None:
        self.redis = RedisServer(self)
        self.nodes = [node(self, self.redis) for _ in range(3)]

    def test_everywhereOnce(self) -> None:
        """
        Two publishers on node A, 500 records each, with levels; SSE
        subscribers on B and C (and A) get every record once, each
        publisher's in order, everything it carries, and the same ids on
        every node.
        """
        a, b, c = self.nodes
        streams: list[Stream] = []
        for each in (a, b, c):
            streams.append(each.subscribe("app=^rel$&format=sse"))
            each.subscribed(1)
        publishers = []

        def publish(proc: str) -> None:
            sock = socket.create_connection(("127.0.0.1", a.publishPort), timeout=TIMEOUT)
            sock.sendall(f"app=rel&proc={proc}\n".encode())
            for n in range(0, 500, 50):
                sock.sendall(
                    b"".join(
                        b"%s %s %d\n" % (b"ERROR" if i % 7 == 0 else b"INFO", proc.encode(), i)
                        for i in range(n, n + 50)
                    )
                )
            sock.close()

        for proc in ("one", "two"):
            publishers.append(threading.Thread(target=publish, args=(proc,)))
            publishers[-1].start()
        for thread in publishers:
            thread.join(TIMEOUT)
        bodies = [
            stream.readUntil(lambda body: body.count(b"\nid: ") + body.startswith(b"id: ") >= 1000)
            for stream in streams
        ]
        events = [sseEvents(body) for body in bodies]
        for got in events:
            self.assertEqual(len(got), 1000)
            for proc in ("one", "two"):
                mine = [data for _, data in got if data["proc"] == proc]
                self.assertEqual(
                    [data["log"].split()[-1] for data in mine], [str(i) for i in range(500)]
                )
                self.assertEqual(
                    [data.get("level") for data in mine],
                    ["error" if i % 7 == 0 else "info" for i in range(500)],
                )
        self.assertEqual(events[1], events[0])
        self.assertEqual(events[2], events[0])
        seqs = [data["seq"] for _, data in events[0]]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), 1000)

    def test_burst(self) -> None:
        """
        200,000 lines published on A as fast as it reads them reach a
        subscriber on B that reads as fast as it can (curl): each line
        once, in order, and any that could not be sent counted in a notice
        (on a quiet machine there are none: what a node reads from the
        stream is delivered a slice at a time, its subscribers' connections
        written between).
        """
        a, b, _ = self.nodes
        output = self.mktemp()
        with open(output, "wb") as sink:
            reader = subprocess.Popen(
                [curl(), "-sN", f"http://127.0.0.1:{b.subscribePort}/?app=^burst$&format=json"],
                stdout=sink,
            )
        self.addCleanup(terminate, reader)
        b.subscribed(1)
        publisher = a.publish(b"app=burst\n")
        for first in range(0, 200_000, 20_000):
            publisher.sendall(b"".join(b"n %d\n" % n for n in range(first, first + 20_000)))
        publisher.close()

        def tail() -> bytes:
            with open(output, "rb") as f:
                f.seek(max(os.path.getsize(output) - 100, 0))
                return f.read()

        waitFor(lambda: b'"n 199999"' in tail(), timeout=60, what="the last line")
        numbers = []
        missed = 0
        with open(output, "rb") as f:
            for line in f:
                value = json.loads(line)
                if "dropped" in value:
                    missed += value["dropped"]
                else:
                    numbers.append(int(value["log"].split()[1]))
        self.assertEqual(numbers, sorted(set(numbers)))
        self.assertEqual(len(numbers) + missed, 200_000)

    def test_historyEverywhere(self) -> None:
        """
        C{tail} gives the same answer on every node, a client resumes on
        another node with no gap and no duplicate, and a node that starts
        later serves history from before it started.
        """
        a, b, c = self.nodes
        a.publish(b"app=hist\n" + b"".join(b"n %d\n" % n for n in range(100))).close()

        def tail(server: Server) -> bytes:
            return get(server, "/?app=hist&tail=1000&follow=0&format=sse").read()

        waitFor(lambda: len(sseEvents(tail(c))) == 100, what="100 records on C")
        self.assertEqual(sseEvents(tail(a)), sseEvents(tail(c)))
        waitFor(lambda: len(sseEvents(tail(b))) == 100, what="100 records on B")
        self.assertEqual(sseEvents(tail(b)), sseEvents(tail(c)))
        ids = [ident for ident, _ in sseEvents(tail(a))]
        b.publish(b"app=hist\n" + b"".join(b"n %d\n" % n for n in range(100, 150))).close()
        waitFor(lambda: len(sseEvents(tail(c))) == 150, what="150 records on C")
        resumed = get(c, "/?app=hist&format=sse&follow=0", {"Last-Event-ID": ids[49]}).read()
        self.assertEqual(
            [data["log"] for _, data in sseEvents(resumed)], [f"n {n}" for n in range(50, 150)]
        )
        self.assertNotIn(b"earlier run", resumed)
        late = node(self, self.redis)
        self.assertEqual(sseEvents(tail(late)), sseEvents(tail(a)))


class Publisher:
    """
    A publisher sending numbered lines to a node steadily, in a thread,
    until stopped.
    """

    def __init__(self, server: Server, app: str) -> None:
        self.sent = 0
        self._stop = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", server.publishPort), timeout=TIMEOUT)
        self._sock.sendall(f"app={app}\n".encode())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self._sock.sendall(b"".join(b"n %d\n" % (self.sent + i) for i in range(20)))
            self.sent += 20

    def stop(self) -> int:
        """
        Stop; how many lines were sent.
        """
        self._stop.set()
        self._thread.join(TIMEOUT)
        self._sock.close()
        return self.sent


def outputOf(stream: Stream, last: int) -> tuple[list[int], int]:
    """
    Read a JSON subscription until it has line C{n last}: the numbers of
    the lines it got, in order, and the records its notices said it
    missed.
    """
    end = re.compile(rb'"n %d[" ]' % last)
    searched = [0]

    def done(body: bytes) -> bool:
        # Only what came since the last look: the body grows large.
        found = end.search(body, max(searched[0] - 64, 0)) is not None
        searched[0] = len(body)
        return found

    body = stream.readUntil(done, timeout=60)
    numbers = []
    missed = 0
    for line in body.splitlines():
        value = json.loads(line)
        if "dropped" in value:
            missed += value["dropped"]
        else:
            numbers.append(int(value["log"].split()[1]))
    return numbers, missed


class FaultTests(SynchronousTestCase):
    """
    Redis restarted, or stalled, under a steady load.
    """

    def restartUnderLoad(self, persistent: bool) -> tuple[Server, Server, str]:
        """
        Node A's publisher sends steadily; Redis restarts meanwhile.  A's
        subscriber gets every line once, in order (A went on alone);
        B's gets lines in order, none twice, and notices that count
        exactly those it missed.  Each node logged the outage once.
        """
        redis = RedisServer(self, persistent=persistent)
        a, b = node(self, redis), node(self, redis)
        mine = a.subscribe("app=^f$&format=json")
        a.subscribed(1)
        theirs = b.subscribe("app=^f$&format=json")
        b.subscribed(1)
        publisher = Publisher(a, "f")
        waitFor(lambda: publisher.sent > 2000, what="2000 lines sent")
        waitFor(lambda: sseEvents(get(b, "/?app=f&tail=1&follow=0&format=sse").read()))
        before = sseEvents(get(b, "/?app=f&tail=1&follow=0&format=sse").read())[0][0]
        redis.restart()
        for each in (a, b):
            waitFor(
                lambda each=each: each.log().count(": joined as ") >= 2, timeout=60, what="a rejoin"
            )
        rejoined = publisher.sent
        waitFor(lambda: publisher.sent > rejoined + 2000, what="2000 more lines sent")
        total = publisher.stop()
        numbers, missed = outputOf(mine, total - 1)
        self.assertEqual((numbers, missed), (list(range(total)), 0))
        numbers, missed = outputOf(theirs, total - 1)
        self.assertEqual(numbers, sorted(set(numbers)))
        self.assertGreater(missed, 0)
        self.assertEqual(missed, total - len(numbers))
        for each in (a, b):
            log = each.log()
            self.assertEqual(
                log.count("going on alone") + log.count("cannot reach it"), 1, log[-3000:]
            )
        return a, b, before

    def test_restartedEmpty(self) -> None:
        """
        A Redis without persistence comes back empty: the nodes find its
        data gone, and an id from before is of an earlier run.
        """
        a, b, before = self.restartUnderLoad(persistent=False)
        self.assertIn("its data is gone", b.log())
        resumed = get(b, "/?app=f&follow=0&format=sse", {"Last-Event-ID": before}).read()
        self.assertIn(b"earlier run", resumed)

    def test_restartedPersistent(self) -> None:
        """
        A Redis that keeps its data comes back with it: the cluster's id
        stays.
        """
        a, b, before = self.restartUnderLoad(persistent=True)
        self.assertNotIn("its data is gone", b.log())
        resumed = get(b, "/?app=f&follow=0&format=sse", {"Last-Event-ID": before}).read()
        self.assertNotIn(b"earlier run", resumed)
        self.assertEqual(sseEvents(resumed)[0][1]["seq"], int(before.split("-")[1]) + 1)
        ids = set(re.findall(r"ids (\d+)-…", b.log()))
        self.assertEqual(len(ids), 1, ids)

    def test_stalled(self) -> None:
        """
        While Redis is stopped (C{SIGSTOP}) under a flood, node A goes on
        alone once more than C{--cluster-buffer-bytes} have not come back:
        its subscriber gets every line at once, its memory stays bounded;
        when Redis goes on, A rejoins, and B's subscriber is told exactly
        what it missed.
        """
        redis = RedisServer(self)
        bound = 256 * 1024
        a = node(self, redis, "--cluster-buffer-bytes", str(bound))
        b = node(self, redis)
        mine = a.subscribe("app=^s$&format=json")
        a.subscribed(1)
        theirs = b.subscribe("app=^s$&format=json")
        b.subscribed(1)
        publisher = a.publish(b"app=s\n")
        publisher.sendall(b"".join(b"n %d\n" % n for n in range(1000)))
        outputOf(theirs, 999)
        before = procStatus(a.process.pid)["VmRSS"]
        redis.pause()
        line = b"x" * 100
        seen: list[bytes] = []
        for first in range(1000, 201_000, 5_000):
            publisher.sendall(
                b"".join(b"n %d %s\n" % (n, line) for n in range(first, first + 5_000))
            )
            # Read as it comes, half the subscriber's queue at a time: one
            # that falls behind loses lines.
            outputOf(mine, first + 4_999)
            # What /healthz says while Redis is stopped.
            seen.append(get(a, "/healthz").read())
        numbers, missed = outputOf(mine, 200_999)
        self.assertEqual((numbers, missed), (list(range(201_000)), 0))
        a.waitForLog(f"going on alone (more than {bound} bytes sent have not come back)")
        self.assertIn(b"ok\ncluster: alone (more than", b"".join(seen), a.log()[-4000:])
        # 22 MB went through while Redis was stopped; little of it stayed.
        grown = procStatus(a.process.pid)["VmRSS"] - before
        self.assertLess(grown, 40 * 1024, f"{grown} kB")
        redis.resume()
        waitFor(lambda: a.log().count(": joined as ") >= 2, timeout=60, what="A to rejoin")
        self.assertEqual(get(a, "/healthz").read(), b"ok\ncluster: joined\n")
        publisher.sendall(b"".join(b"n %d\n" % n for n in range(201_000, 202_000)))
        publisher.close()
        numbers, missed = outputOf(theirs, 201_999)
        self.assertEqual(numbers, sorted(set(numbers)))
        self.assertEqual(missed, 202_000 - len(numbers))
        self.assertEqual(numbers[-1000:], list(range(201_000, 202_000)))


class SharedHistoryTests(SynchronousTestCase):
    """
    Replays that reach past the records a node holds in memory read the
    cluster's stream: the same answer on every node.
    """

    def test_deep(self) -> None:
        """
        With 100 records in memory, C{tail}, C{since} (with C{level} and
        C{log}) and a resume from an old id each answer from the stream,
        the same on both nodes, in order, with no gap and no duplicate.
        """
        redis = RedisServer(self)
        a = node(self, redis, "--history", "100")
        b = node(self, redis, "--history", "100")
        for first in range(0, 3000, 500):
            a.publish(
                b"app=deep\n"
                + b"".join(
                    b"%s n %d\n" % (b"ERROR" if n % 10 == 0 else b"INFO", n)
                    for n in range(first, first + 500)
                )
            ).close()
        b.publish(b"app=other\nnot this\n").close()

        def answer(server: Server, query: str) -> list[tuple[str, dict[str, object]]]:
            return sseEvents(get(server, f"/?follow=0&format=sse&{query}").read())

        waitFor(
            lambda: len(answer(b, "app=deep&tail=5000")) == 3000,
            what="3000 records on B",
        )
        for query, expected in [
            ("app=deep&tail=1000", [f"n {n}" for n in range(2000, 3000)]),
            ("app=deep&since=1h", [f"n {n}" for n in range(3000)]),
            ("app=deep&since=1h&level=error&log=00%24", [f"n {n}" for n in range(100, 3000, 100)]),
            ("app=deep&tail=3&log=n%201%5B0-9%5D%24", ["n 17", "n 18", "n 19"]),
        ]:
            got = answer(a, query)
            self.assertEqual(
                [str(data["log"]).split(" ", 1)[1] for _, data in got], expected, query
            )
            self.assertEqual(answer(b, query), got, query)
        ids = [ident for ident, _ in answer(a, "app=deep&tail=5000")]
        resumed = answer(b, f"app=deep&last_event_id={ids[9]}")
        self.assertEqual([ident for ident, _ in resumed], ids[10:])


class NodeTests(SynchronousTestCase):
    """
    Nodes that go away, publishers that move, and credentials.
    """

    def test_nodeKilled(self) -> None:
        """
        Node A killed: B and C go on; A's publisher reconnects to B with
        its topic, and C's subscriber gets its lines under that topic, in
        order, with no duplicate.
        """
        redis = RedisServer(self)
        a, b, c = (node(self, redis) for _ in range(3))
        watching = c.subscribe("app=^moving$&format=json")
        c.subscribed(1)
        a.publish(b"app=moving&proc=web\n" + b"".join(b"n %d\n" % n for n in range(100))).close()
        outputOf(watching, 99)
        a.process.kill()
        a.process.wait(TIMEOUT)
        b.publish(
            b"app=moving&proc=web\n" + b"".join(b"n %d\n" % n for n in range(100, 200))
        ).close()
        numbers, missed = outputOf(watching, 199)
        self.assertEqual((numbers, missed), (list(range(200)), 0))
        body = get(c, "/?app=moving&tail=1000&follow=0&format=json").read()
        self.assertEqual({json.loads(line)["proc"] for line in body.splitlines()}, {"web"})
        self.assertEqual(len(body.splitlines()), 200)

    def test_credentials(self) -> None:
        """
        Redis's own AUTH (a password in the URL) and logio's tokens both
        apply: a node without the password does not join; subscribers and
        publishers need their tokens on every node.
        """
        redis = RedisServer(self, password="s3cr:t")
        tokens = self.mktemp()
        with open(tokens, "w") as f:
            f.write("pubtoken pub ^app$\nsubtoken sub ^app$\n")
        url = redis.url().replace("s3cr:t", "s3cr%3At")
        a = Server(self, "--cluster", url, "--auth", tokens)
        b = Server(self, "--cluster", url, "--auth", tokens)
        for each in (a, b):
            each.waitForLog(": joined as ")
        wrong = Server(self, "--cluster", redis.url(password="nope"))
        wrong.waitForLog("cannot reach it")
        self.assertNotIn(": joined as ", wrong.log())
        self.assertEqual(get(b, "/?app=app&tail=1&follow=0").status, 401)
        watching = b.subscribe("app=app&format=json", headers=["Authorization: Bearer subtoken"])
        b.subscribed(1)
        a.publish(b"app=app&token=pubtoken\nn 0\n").close()
        self.assertEqual(outputOf(watching, 0), ([0], 0))
        metrics = get(a, "/metrics", {"Authorization": "Bearer subtoken"}).read().decode()
        self.assertIn("logio_cluster_records_out_total 1.0", metrics)
        self.assertIn("logio_cluster_joined 1.0", metrics)

    def test_tls(self) -> None:
        """
        Over C{rediss://} with C{--cluster-ca}, nodes join and relay; a
        node that does not trust the server's certificate does not join.
        """
        redis = RedisServer(self, tls=True)
        ca = redis.certificates["ca"]
        a = Server(self, "--cluster", redis.url(), "--cluster-ca", ca)
        b = Server(self, "--cluster", redis.url(), "--cluster-ca", ca)
        for each in (a, b):
            each.waitForLog(": joined as ")
        untrusting = Server(self, "--cluster", redis.url())
        untrusting.waitForLog("cannot reach it")
        self.assertNotIn(": joined as ", untrusting.log())
        watching = b.subscribe("app=^tls$&format=json")
        b.subscribed(1)
        a.publish(b"app=tls\nn 0\nn 1\n").close()
        self.assertEqual(outputOf(watching, 1), ([0, 1], 0))
