"""
End-to-end tests of cluster nodes: several C{twistd -n logio --cluster}
processes sharing one real C{redis-server}.
"""

from __future__ import annotations

import json
import re
import socket
import threading

from twisted.trial.unittest import SynchronousTestCase

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
