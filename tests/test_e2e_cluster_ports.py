"""
End-to-end tests of cluster nodes on one machine sharing their publisher
and subscriber ports (C{SO_REUSEPORT}), and of servers that cannot share
a port in use.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from tests.support.ports import freePort
from tests.support.processes import environment
from tests.support.redis import RESERVED_PORTS, RedisServer
from tests.support.server import (
    Server,
    Stream,
    get,
    logioArguments,
    metrics,
    portOf,
    twistd,
)
from tests.support.waiting import TIMEOUT, waitFor

#: Connections to make at most before each of two nodes must have had one:
#: the kernel picks a listener by a hash of each connection's addresses,
#: so a connection goes to either node about half the time.
ATTEMPTS = 200

#: Records each publisher sends.
RECORDS = 20


def ports(count: int) -> list[int]:
    """
    C{count} different ports of 127.0.0.1 that nothing listens on right
    now, none of Redis's or logio's own.
    """
    chosen: list[int] = []
    while len(chosen) < count:
        port = freePort()
        if port not in RESERVED_PORTS and port not in chosen:
            chosen.append(port)
    return chosen


def at(port: int) -> str:
    """
    The endpoint of C{port} on 127.0.0.1.
    """
    return f"tcp:{port}:interface=127.0.0.1"


def sseEvents(body: bytes) -> list[tuple[str, dict[str, object]]]:
    """
    The C{(id, data)} of each record event of an SSE body.
    """
    return [
        (ident.decode(), json.loads(data))
        for ident, data in re.findall(rb"^id: (\S+)\ndata: (.*)$", body, re.MULTILINE)
    ]


def runTwistd(*options: str) -> tuple[int, str]:
    """
    Run a logio server with C{options} until it exits; its status and all
    it wrote.
    """
    result = subprocess.run(
        [twistd(), *logioArguments(*options)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment(),
    )
    return result.returncode, result.stdout + result.stderr


class SharedPortsTests(SynchronousTestCase):
    """
    Two nodes of one cluster listen on the same publisher and subscriber
    ports; each also has a subscriber port of its own, to ask it alone.
    """

    def setUp(self) -> None:
        self.redis = RedisServer(self)
        self.publishPort, self.subscribePort, *self.ownPorts = ports(4)
        self.nodes = [self.node(port) for port in self.ownPorts]

    def node(self, own: int) -> Server:
        """
        A node of the cluster on the shared ports and on C{own}, joined.
        """
        server = Server(
            self,
            "--cluster", self.redis.url(),
            "--publish", at(self.publishPort),
            "--subscribe", at(self.subscribePort),
            "--subscribe", at(own),
        )  # fmt: skip
        server.waitForLog(": joined as ")
        return server

    def recordsIn(self, server: Server, own: int) -> float:
        """
        How many records C{server}'s own publishers have sent it, as its
        own port C{own} answers.
        """
        samples = metrics(server, own)
        return sum(
            value for (name, _), value in samples.items() if name == "logio_records_in_total"
        )

    def subscriptions(self) -> list[int]:
        """
        How many subscriptions each node has logged.
        """
        return [node.log().count(" subscribed to ") for node in self.nodes]

    def test_bothStart(self) -> None:
        """
        Both nodes listen on the shared ports, and on their own.
        """
        for node, own in zip(self.nodes, self.ownPorts, strict=True):
            self.assertEqual(node.publishPort, self.publishPort)
            self.assertEqual(
                [portOf(address) for address in node.addresses["subscribers"]],
                [self.subscribePort, own],
            )

    def test_everyRecordOnce(self) -> None:
        """
        Publishers connecting to the shared port land on both nodes;
        subscribers on the shared port, on either node, get every record of
        every publisher once, each publisher's in order, with the same ids,
        and each node's history holds the same.
        """
        streams: list[Stream] = []
        for _ in range(ATTEMPTS):
            streams.append(Stream("127.0.0.1", self.subscribePort, "/?app=^ports$&format=sse"))
            self.addCleanup(streams[-1].close)
            waitFor(
                lambda: sum(self.subscriptions()) == len(streams),
                what=f"{len(streams)} subscriptions",
            )
            if all(self.subscriptions()):
                break
        self.assertTrue(all(self.subscriptions()), f"subscriptions: {self.subscriptions()}")

        def published() -> list[float]:
            return [
                self.recordsIn(node, own)
                for node, own in zip(self.nodes, self.ownPorts, strict=True)
            ]

        procs: list[str] = []
        for attempt in range(ATTEMPTS):
            proc = f"p{attempt}"
            with socket.create_connection(("127.0.0.1", self.publishPort), timeout=TIMEOUT) as sock:
                sock.sendall(
                    f"app=ports&proc={proc}\n".encode()
                    + b"".join(b"%s %d\n" % (proc.encode(), n) for n in range(RECORDS))
                )
            procs.append(proc)
            waitFor(
                lambda: sum(published()) == RECORDS * len(procs),
                what=f"the records of {len(procs)} publishers",
            )
            if all(published()):
                break
        counts = published()
        self.assertTrue(all(counts), f"records published on each node: {counts}")

        expected = Counter((proc, f"{proc} {n}") for proc in procs for n in range(RECORDS))
        total = sum(expected.values())
        bodies = [
            stream.readUntil(lambda body: len(sseEvents(body)) >= total) for stream in streams
        ]
        events = [sseEvents(body) for body in bodies]
        for got in events:
            self.assertEqual(Counter((data["proc"], data["log"]) for _, data in got), expected)
            for proc in procs:
                self.assertEqual(
                    [data["log"] for _, data in got if data["proc"] == proc],
                    [f"{proc} {n}" for n in range(RECORDS)],
                )
            seqs = [data["seq"] for _, data in got]
            self.assertEqual(seqs, sorted(set(seqs)))
            self.assertEqual(got, events[0])
        for node, own in zip(self.nodes, self.ownPorts, strict=True):
            tail = get(node, f"/?app=^ports$&tail={total}&follow=0&format=sse", port=own)
            self.assertEqual(sseEvents(tail.read()), events[0])


class PortInUseTests(SynchronousTestCase):
    """
    Only cluster nodes share a port: a server that did not ask to share
    cannot listen where another listens, nor can a node where such a server
    listens.
    """

    def assertCannotListen(self, port: int, *options: str) -> None:
        """
        A server with C{options} ends with status 1 and the clear line of a
        publisher port in use.
        """
        status, output = runTwistd(*options)
        self.assertEqual(status, 1, output)
        self.assertIn(f"logio: cannot listen for publishers on {at(port)}", output)
        self.assertIn("Address already in use", output)
        self.assertNotIn("Traceback", output)

    def test_withoutCluster(self) -> None:
        """
        Without C{--cluster}, a second server on a port in use does not start.
        """
        port = ports(1)[0]
        Server(self, "--publish", at(port))
        self.assertCannotListen(port, "--publish", at(port))

    def test_nodeBesideServer(self) -> None:
        """
        A node cannot listen on the port of a server without C{--cluster},
        nor such a server on a node's.  (No Redis is needed for this: a node
        that cannot reach it goes on alone.)
        """
        plain, shared, redis = ports(3)
        cluster = ("--cluster", f"redis://127.0.0.1:{redis}/0")
        Server(self, "--publish", at(plain))
        self.assertCannotListen(plain, *cluster, "--publish", at(plain))
        Server(self, *cluster, "--publish", at(shared))
        self.assertCannotListen(shared, "--publish", at(shared))
