"""
Fuzz tests of the subscriber port: random query strings, paths and headers
(and random splits of the request) never make the server raise, always get
a well-formed answer, and never disturb another subscriber.
"""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from logio.auth import Tokens
from logio.broker import Broker
from logio.settings import Settings
from logio.topic import Topic
from logio.web.stream import _afterNth
from tests.support.fakes import makeTestSite, publish
from tests.support.http import Client, get

TOPIC = Topic("myapp", "web", "foobar")
TS = "2016-12-06T22:14:21.448"
STATUSES = {b"200", b"400", b"401", b"403", b"404", b"405", b"408", b"413", b"503"}
GOOD = "good-token-0123456789"

names = st.sampled_from(
    [
        "app",
        "proc",
        "host",
        "log",
        "tail",
        "follow",
        "format",
        "last_event_id",
        "token",
        "ap",
        "APP",
        "",
    ]
)
values = st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    [
        "(",
        "[",
        "\\",
        "a{1000}",
        "(.{1,100}){10}",
        "-1",
        "0",
        "json",
        "sse",
        "1-2",
        "1700000000000-5",
        "%ff",
        "%00",
        GOOD,
    ]
)
queries = st.lists(st.tuples(names, values), max_size=6).map(
    lambda pairs: "&".join(f"{name}={value}" for name, value in pairs)
)
headerNames = st.sampled_from(
    [
        "Accept",
        "Last-Event-ID",
        "Content-Length",
        "Transfer-Encoding",
        "Host",
        "Authorization",
        "X-Any",
        "Connection",
    ]
)
headerValues = st.binary(max_size=30).filter(
    lambda b: b"\r" not in b and b"\n" not in b
) | st.sampled_from(
    [
        b"text/event-stream",
        b"application/x-ndjson",
        b"chunked",
        b"99999999",
        b"-5",
        b"close",
        b"1700000000000-1",
        f"Bearer {GOOD}".encode(),
        b"Basic " + base64.b64encode(f"x:{GOOD}".encode()),
        b"Basic !!",
        b"evil.example",
    ]
)


class SubscriberPortFuzzTests(SynchronousTestCase):
    """
    Whatever a client sends, the port answers sanely and others are unharmed.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.broker = Broker(Settings(), start=1700000000000)
        self.site = makeTestSite(self.broker, self.clock, tokens=self.tokens())
        self.bystander = Client(self.site, get(f"app=myapp&format=json&token={GOOD}"))

    def tokens(self) -> Tokens | None:
        return None

    def check(self, request: bytes, splits: list[int]) -> None:
        transport = StringTransport()
        channel = self.site.buildProtocol(None)
        channel.makeConnection(transport)
        last = 0
        for split in sorted(set(splits)) + [len(request)]:
            if not transport.disconnecting:
                channel.dataReceived(request[last:split])
            last = split
        self.clock.advance(11)
        written = transport.value()
        if written:
            self.assertTrue(written.startswith(b"HTTP/1."), written[:100])
            self.assertIn(written.split(b" ", 2)[1], STATUSES, written[:200])
        channel.connectionLost(Exception("gone"))
        before = len(self.bystander.body().splitlines())
        publish(self.broker, TOPIC, [(TS, "still here", None)])
        self.assertEqual(len(self.bystander.body().splitlines()), before + 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        path=st.sampled_from(
            ["/", "/x/y", "/healthz", "/metrics", "/topics", "/ui", "/favicon.ico"]
        ),
        query=queries,
        headers=st.lists(st.tuples(headerNames, headerValues), max_size=5),
        method=st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"BREW"]),
        splits=st.lists(st.integers(min_value=0, max_value=400), max_size=4),
    )
    def test_requests(
        self,
        path: str,
        query: str,
        headers: list[tuple[str, bytes]],
        method: bytes,
        splits: list[int],
    ) -> None:
        """
        Random well-framed requests: every answer is a known status, nothing raises.
        """
        head = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers)
        target = (path + ("?" + query if query else "")).encode("utf-8", "surrogatepass")
        self.check(method + b" " + target + b" HTTP/1.1\r\n" + head + b"\r\n", splits)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        data=st.binary(max_size=300),
        splits=st.lists(st.integers(min_value=0, max_value=300), max_size=4),
    )
    def test_garbage(self, data: bytes, splits: list[int]) -> None:
        """
        Random bytes, as a broken or hostile client sends: nothing raises.
        """
        self.check(data, splits)


class GuardedSubscriberPortFuzzTests(SubscriberPortFuzzTests):
    """
    The same on a server with C{--auth}, where requests may carry tokens.
    """

    def tokens(self) -> Tokens | None:
        path = self.mktemp()
        with open(path, "w") as tokens:
            tokens.write(f"{GOOD} sub myapp\npublisher-token-0123 pub .*\n")
        return Tokens(path)


class AfterNthTests(SynchronousTestCase):
    """
    The queue finds where its nth record ends without splitting a segment.
    """

    @settings(max_examples=300, deadline=None)
    @given(
        lengths=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=50),
        end=st.sampled_from([b"\n", b"\n\n"]),
        data=st.data(),
    )
    def test_sameAsSplitting(self, lengths: list[int], end: bytes, data: st.DataObject) -> None:
        """
        For records of any lengths, the answer is where splitting would cut.
        (A record ending in a blank line, as an SSE event does, is never
        empty: ends do not overlap.)
        """
        least = len(end) - 1
        segment = b"".join(b"x" * max(length, least) + end for length in lengths)
        nth = data.draw(st.integers(min_value=0, max_value=len(lengths)))
        expected = len(segment) - len(segment.split(end, nth)[-1]) if nth else 0
        self.assertEqual(_afterNth(segment, end, nth, len(lengths)), expected)
