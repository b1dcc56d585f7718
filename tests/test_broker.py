"""
Tests for L{logio.broker}: filters, route caching and fan-out.
"""

from __future__ import annotations

from typing import Callable

from attrs import define, field
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from logio.broker import BadFilter, Broker, Filters, compileFilter, pack
from logio.interfaces import IBroker, ISubscriber
from logio.topic import Topic

TS = "2016-12-06T22:14:21.448"
WEB = Topic("myapp", "web", "foobar")


@implementer(ISubscriber)
@define(eq=False)
class FakeSubscriber:
    """
    Records what the broker delivers.
    """

    filters: Filters
    received: list[tuple[bytes, int, bool]] = field(factory=list)
    onDeliver: Callable[[], None] | None = None
    aborted: bool = False
    onAbort: Callable[[], None] | None = None

    def deliver(self, data: bytes, lines: int, whole: bool) -> None:
        self.received.append((data, lines, whole))
        if self.onDeliver is not None:
            self.onDeliver()

    def close(self) -> Deferred[object]:
        return succeed(None)

    def abort(self) -> None:
        self.aborted = True
        if self.onAbort is not None:
            self.onAbort()

    def text(self) -> str:
        return b"".join(data for data, _, _ in self.received).decode()


class CountingSearch:
    """
    A topic filter that counts how often it is evaluated.
    """

    def __init__(self, pattern: str) -> None:
        search = compileFilter("app", pattern)
        assert search is not None
        self.search = search
        self.calls = 0

    def __call__(self, value: bytes) -> object:
        self.calls += 1
        return self.search(value)


class FiltersTests(SynchronousTestCase):
    """
    Query parameters become unanchored RE2 searches.
    """

    def test_unanchored(self) -> None:
        """
        C{bar$} matches C{open bar}; C{^web} does not match C{myweb}.
        """
        self.assertTrue(
            Filters.fromQuery({"app": "bar$"}).matchesTopic(Topic("open bar", "p", "h"))
        )
        self.assertFalse(Filters.fromQuery({"proc": "^web"}).matchesTopic(Topic("a", "myweb", "h")))

    def test_emptyIsNone(self) -> None:
        """
        An empty or missing pattern matches everything and costs nothing.
        """
        filters = Filters.fromQuery({"app": ""})
        self.assertEqual(filters, Filters())
        self.assertTrue(filters.matchesTopic(WEB))

    def test_badPattern(self) -> None:
        """
        A pattern RE2 rejects raises L{BadFilter} naming the field and the error.
        """
        e = self.assertRaises(BadFilter, Filters.fromQuery, {"host": "a(b"})
        self.assertEqual(e.name, "host")
        self.assertIn("'host'", str(e))
        self.assertIn("missing )", str(e))

    def test_backreferenceRejected(self) -> None:
        """
        RE2 syntax, not Python's: a backreference is an error, not a slow match.
        """
        self.assertRaises(BadFilter, compileFilter, "log", r"(a)\1")

    def test_literalIsSubstring(self) -> None:
        """
        A pattern without special characters is a case-sensitive substring
        search, like RE2's answer for it.
        """
        search = compileFilter("log", "ERROR 5")
        assert search is not None
        self.assertTrue(search(b"x ERROR 500 y"))
        self.assertIsNone(search(b"error 500"))
        self.assertIs(compileFilter("log", "ERROR 5"), search)

    def test_unicodeCharacters(self) -> None:
        """
        Searches run on UTF-8 text and match characters, not bytes: C{.} is
        one character however many bytes it takes, and case folding and
        Unicode classes work.  A lone surrogate in a pattern, which no UTF-8
        text holds, matches nothing.
        """
        cases = [
            ("^.$", "é", True),
            ("^..$", "é", False),
            ("(?i)école", "ÉCOLE", True),
            (r"^\p{Greek}+$", "αβγ", True),
            ("^[^a]$", "€", True),
            ("x.y", "x\u2028y", True),
        ]
        for pattern, text, matches in cases:
            search = compileFilter("log", pattern)
            assert search is not None
            self.assertEqual(bool(search(text.encode())), matches, (pattern, text))
        # "?" would be a quantifier: the surrogate must not turn into one.
        search = compileFilter("log", "a.\udc80")
        assert search is not None
        self.assertIsNone(search(b"ab"))
        self.assertIsNone(search(b"ab?"))

    def test_bigRepetitionRefused(self) -> None:
        """
        A counted repetition above 100 is refused (it makes RE2 very slow);
        100 is fine.
        """
        e = self.assertRaises(BadFilter, compileFilter, "log", "a[ab]{999}c")
        self.assertIn("{100}", str(e))
        self.assertRaises(BadFilter, compileFilter, "log", "x{2,5000}")
        self.assertIsNotNone(compileFilter("log", "a[ab]{100}c"))

    def test_linearTime(self) -> None:
        """
        C{(a+)+$} against a long line answers (RE2 never backtracks).
        """
        search = compileFilter("log", "(a+)+$")
        assert search is not None
        self.assertIsNone(search("a" * 10000 + "!"))


class BrokerTests(SynchronousTestCase):
    """
    Fan-out from publishers to matching subscribers.
    """

    def setUp(self) -> None:
        self.broker = Broker()

    def subscribe(self, **query: str) -> FakeSubscriber:
        subscriber = FakeSubscriber(Filters.fromQuery(query))
        self.broker.subscribe(subscriber)
        return subscriber

    def test_interface(self) -> None:
        """
        L{Broker} provides L{IBroker}.
        """
        self.assertTrue(verifyObject(IBroker, self.broker))

    def test_fanOutOneSegment(self) -> None:
        """
        A batch is formatted once and every matching subscriber gets the same bytes in one piece.
        """
        one = self.subscribe(app="my")
        two = self.subscribe(proc="web|worker")
        none = self.subscribe(host="^nomatch$")
        self.broker.publish(WEB, [(TS, "a"), (TS, "b")])
        expected = f"{TS} myapp[web] foobar: a\n{TS} myapp[web] foobar: b\n".encode()
        self.assertEqual(one.received, [(expected, 2, True)])
        self.assertIs(one.received[0][0], two.received[0][0])
        self.assertEqual(none.received, [])
        self.assertEqual((self.broker.published, self.broker.delivered), (2, 4))

    def test_topicFilterEvaluatedOncePerTopic(self) -> None:
        """
        Topic filters run once per (subscriber, topic), not per record or batch.
        """
        search = CountingSearch("myapp")
        subscriber = FakeSubscriber(Filters(app=search))
        self.broker.subscribe(subscriber)
        for _ in range(5):
            self.broker.publish(WEB, [(TS, "x")] * 10)
        self.broker.publish(Topic("other", "p", "h"), [(TS, "y")])
        self.assertEqual(search.calls, 2)
        self.assertEqual(len(subscriber.received), 5)

    def test_subscribeAfterRouteCached(self) -> None:
        """
        A subscriber that arrives after a topic was routed still gets it.
        """
        self.broker.publish(WEB, [(TS, "before")])
        late = self.subscribe(app="myapp")
        self.broker.publish(WEB, [(TS, "after")])
        self.assertEqual(late.text(), f"{TS} myapp[web] foobar: after\n")

    def test_unsubscribe(self) -> None:
        """
        An unsubscribed subscriber gets nothing more; unsubscribing twice is harmless.
        """
        gone = self.subscribe()
        stays = self.subscribe(log="x")
        self.broker.publish(WEB, [(TS, "x1")])
        self.broker.unsubscribe(gone)
        self.broker.unsubscribe(gone)
        self.broker.publish(WEB, [(TS, "x2")])
        self.assertEqual(len(gone.received), 1)
        self.assertEqual(len(stays.received), 2)
        self.broker.unsubscribe(stays)
        self.assertEqual(self.broker.subscribers, ())

    def test_unsubscribeDuringDelivery(self) -> None:
        """
        A subscriber that goes away while being delivered to does not make
        the next one miss the batch.
        """
        leaving = self.subscribe()
        staying = self.subscribe()
        leaving.onDeliver = lambda: self.broker.unsubscribe(leaving)
        self.broker.publish(WEB, [(TS, "x")])
        self.assertEqual(len(staying.received), 1)
        self.assertEqual(self.broker.subscribers, (staying,))

    def test_forgetRebuildsRoute(self) -> None:
        """
        After L{Broker.forget} a topic is routed afresh, with the same result.
        """
        subscriber = self.subscribe(app="myapp")
        self.broker.publish(WEB, [(TS, "1")])
        self.broker.forget(WEB)
        self.broker.publish(WEB, [(TS, "2")])
        self.assertEqual(len(subscriber.received), 2)

    def test_logFilterPerRecord(self) -> None:
        """
        A C{log} filter picks records from a batch; a matching multi-line record comes whole.
        """
        subscriber = self.subscribe(log="ERROR")
        self.broker.publish(WEB, [(TS, "INFO ok"), (TS, "ERROR bad\n  detail"), (TS, "ERROR two")])
        head = f"{TS} myapp[web] foobar: "
        self.assertEqual(
            subscriber.received,
            [
                (f"{head}ERROR bad\n{head}  detail\n".encode(), 2, False),
                (f"{head}ERROR two\n".encode(), 1, True),
            ],
        )

    def test_sharedLogFilterRunsOnce(self) -> None:
        """
        Subscribers with the same C{log} pattern share one search per record.
        """
        calls = []
        search = compileFilter("log", "b+")
        assert search is not None

        def counted(text: bytes) -> object:
            calls.append(text)
            return search(text)

        first = FakeSubscriber(Filters(log=counted))
        second = FakeSubscriber(Filters(log=counted))
        self.broker.subscribe(first)
        self.broker.subscribe(second)
        self.broker.publish(WEB, [(TS, "abc"), (TS, "xyz")])
        self.assertEqual(calls, [b"abc", b"xyz"])
        self.assertEqual(first.text(), f"{TS} myapp[web] foobar: abc\n")
        self.assertEqual(first.received, second.received)
        self.broker.unsubscribe(first)
        self.broker.publish(WEB, [(TS, "bb")])
        self.assertEqual((len(first.received), len(second.received)), (1, 2))

    def test_filterErrorRegistersNothing(self) -> None:
        """
        A subscriber whose filter raises on a cached topic is not left half
        registered.
        """
        self.broker.publish(WEB, [(TS, "x")])

        def broken(value: bytes) -> object:
            raise RuntimeError("broken filter")

        self.assertRaises(RuntimeError, self.broker.subscribe, FakeSubscriber(Filters(app=broken)))
        self.assertEqual(self.broker.subscribers, ())

    def test_failingSubscriberIsolated(self) -> None:
        """
        A subscriber whose delivery raises is logged, unsubscribed and
        disconnected; the subscribers after it still get the batch.
        """
        failing = self.subscribe()
        staying = self.subscribe()

        def explode() -> None:
            raise RuntimeError("broken subscriber")

        failing.onDeliver = explode
        self.broker.publish(WEB, [(TS, "x")])
        self.assertEqual(len(staying.received), 1)
        self.assertEqual(self.broker.subscribers, (staying,))
        self.assertEqual((failing.aborted, staying.aborted), (True, False))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_failingAbortIsolated(self) -> None:
        """
        A failing subscriber whose disconnection fails too is logged twice
        and still harms no one else.
        """
        failing = self.subscribe()
        staying = self.subscribe()

        def explode() -> None:
            raise RuntimeError("broken subscriber")

        failing.onDeliver = explode
        failing.onAbort = explode
        self.broker.publish(WEB, [(TS, "x")])
        self.assertEqual(len(staying.received), 1)
        self.assertEqual(self.broker.subscribers, (staying,))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_noSubscribersNoWork(self) -> None:
        """
        Publishing to a topic nobody wants is counted and delivers nothing.
        """
        self.broker.publish(WEB, [(TS, "x")])
        self.assertEqual((self.broker.published, self.broker.delivered), (1, 0))

    def test_hostWithColon(self) -> None:
        """
        The prefix of a multi-line record is repeated whole even if the host holds C{": "}.
        """
        subscriber = self.subscribe()
        self.broker.publish(Topic("a", "p", "h: x"), [(TS, "one\ntwo")])
        self.assertEqual(subscriber.text(), f"{TS} a[p] h: x: one\n{TS} a[p] h: x: two\n")

    def test_surrogatesReplaced(self) -> None:
        """
        A lone surrogate from JSON is encoded as C{?}, never an exception.
        """
        subscriber = self.subscribe()
        self.broker.publish(WEB, [(TS, "a\ud800b")])
        self.assertEqual(subscriber.text(), f"{TS} myapp[web] foobar: a?b\n")


class PackTests(SynchronousTestCase):
    """
    L{pack} turns formatted lines into as few segments as possible.
    """

    def test_singleLines(self) -> None:
        """
        Single-line records become one splittable segment.
        """
        self.assertEqual(pack(["t p: a\n", "t p: b\n"], " p: "), [(b"t p: a\nt p: b\n", 2, True)])

    def test_multiLineSegments(self) -> None:
        """
        Multi-line records become their own unsplittable segments, prefix repeated.
        """
        self.assertEqual(
            pack(["t p: a\n", "t p: b1\nb2\n", "t p: c\n", "t p: d\n"], " p: "),
            [
                (b"t p: a\n", 1, True),
                (b"t p: b1\nt p: b2\n", 2, False),
                (b"t p: c\nt p: d\n", 2, True),
            ],
        )
