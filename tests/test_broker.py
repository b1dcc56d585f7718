"""
Tests for L{logio.broker}: filters, route caching and fan-out.
"""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from logio import broker
from logio.broker import (
    MATCH_SLICE,
    MAX_BATCH_SEARCH_SECONDS,
    MAX_SEARCH_SECONDS,
    SEARCH_SHARE,
    Broker,
)
from logio.filters import Filters, Pattern, compileFilter
from logio.formats import JSONFormat, Segment
from logio.interfaces import IBroker, IFilters, IHistory, IPublication, ISubscription
from logio.settings import Settings
from logio.topic import Topic
from tests.support.fakes import FakeBroker, FakeSubscriber, publish

TS = "2016-12-06T22:14:21.448"
WEB = Topic("myapp", "web", "foobar")


class CountingSearch:
    """
    A topic filter that counts how often it is evaluated.
    """

    def __init__(self, pattern: str) -> None:
        compiled = compileFilter("app", pattern)
        assert compiled is not None
        self.search = compiled.search
        self.calls = 0

    def __call__(self, value: bytes) -> object:
        self.calls += 1
        return self.search(value)


class BrokerTests(SynchronousTestCase):
    """
    Fan-out from publishers to matching subscribers.
    """

    def setUp(self) -> None:
        self.broker = Broker(Settings())

    def subscribe(self, **query: str) -> FakeSubscriber:
        subscriber = FakeSubscriber(Filters.fromQuery(query))
        subscriber.subscription = self.broker.subscribe(subscriber)
        return subscriber

    def test_interface(self) -> None:
        """
        L{Broker} provides L{IBroker}, its history L{IHistory}, and what
        C{subscribe} returns L{ISubscription}.
        """
        self.assertTrue(verifyObject(IBroker, self.broker))
        self.assertTrue(verifyObject(IHistory, self.broker.history))
        subscriber = FakeSubscriber(Filters())
        self.assertTrue(verifyObject(IFilters, subscriber.filters))
        self.assertTrue(verifyObject(ISubscription, self.broker.subscribe(subscriber)))

    def test_fanOutOneSegment(self) -> None:
        """
        A batch is formatted once and every matching subscriber gets the same bytes in one piece.
        """
        one = self.subscribe(app="my")
        two = self.subscribe(proc="web|worker")
        none = self.subscribe(host="^nomatch$")
        publish(self.broker, WEB, [(TS, "a", None), (TS, "b", None)])
        expected = f"{TS} myapp[web] foobar: a\n{TS} myapp[web] foobar: b\n".encode()
        self.assertEqual(one.received, [Segment(expected, 2, b"\n")])
        self.assertIs(one.received[0].data, two.received[0].data)
        self.assertEqual(none.received, [])
        self.assertEqual(self.broker.stats.recordsIn, {"test": 2})
        self.assertEqual(self.broker.stats.linesOut, {"text": 4})

    def test_topicFilterEvaluatedOncePerTopic(self) -> None:
        """
        Topic filters run once per (subscriber, topic), not per record or batch.
        """
        search = CountingSearch("myapp")
        subscriber = FakeSubscriber(Filters(app=Pattern("myapp", search)))
        self.broker.subscribe(subscriber)
        for _ in range(5):
            publish(self.broker, WEB, [(TS, "x", None)] * 10)
        publish(self.broker, Topic("other", "p", "h"), [(TS, "y", None)])
        self.assertEqual(search.calls, 2)
        self.assertEqual(len(subscriber.received), 5)

    def test_newTopicMatchedByItsApp(self) -> None:
        """
        A new topic is matched only against the subscribers whose C{app}
        pattern is its app anchored (C{^myapp$}), and those with any other
        app pattern or none; each gets what its filters say, before and
        after others leave.
        """
        searches = {app: CountingSearch(f"^{app}$") for app in ("myapp", "other", "third")}
        exact = {
            app: FakeSubscriber(Filters(app=Pattern(f"^{app}$", search)))
            for app, search in searches.items()
        }
        for subscriber in exact.values():
            subscriber.subscription = self.broker.subscribe(subscriber)
        loose = self.subscribe(app="myapp")
        everything = self.subscribe()
        proc = self.subscribe(app="^myapp$", proc="^db$")
        publish(self.broker, WEB, [(TS, "x", None)])
        publish(self.broker, Topic("myappx", "web", "foobar"), [(TS, "y", None)])
        self.assertEqual(
            {app: search.calls for app, search in searches.items()},
            {"myapp": 1, "other": 0, "third": 0},
        )
        self.assertEqual(len(exact["myapp"].received), 1)
        self.assertEqual((len(loose.received), len(everything.received)), (2, 2))
        self.assertEqual(proc.received, [])
        exact["myapp"].unsubscribe()
        loose.unsubscribe()
        publish(self.broker, Topic("myapp", "db", "h"), [(TS, "z", None)])
        self.assertEqual(len(exact["myapp"].received), 1)
        self.assertEqual(len(loose.received), 2)
        self.assertEqual(len(proc.received), 1)
        self.assertEqual(len(everything.received), 3)

    def test_exactApp(self) -> None:
        """
        Only an anchored literal names one app.
        """
        cases = {
            "^myapp$": "myapp",
            "myapp": None,
            "^my.app$": None,
            "^myapp": None,
            "": None,
            "^$": None,
            "^my-app_2$": "my-app_2",
        }
        for pattern, app in cases.items():
            self.assertEqual(Filters.fromQuery({"app": pattern}).exactApp(), app, pattern)

    def test_subscribeAfterRouteCached(self) -> None:
        """
        A subscriber that arrives after a topic was routed still gets it.
        """
        publish(self.broker, WEB, [(TS, "before", None)])
        late = self.subscribe(app="myapp")
        publish(self.broker, WEB, [(TS, "after", None)])
        self.assertEqual(late.text(), f"{TS} myapp[web] foobar: after\n")

    def test_unsubscribe(self) -> None:
        """
        A subscriber whose subscription is closed gets nothing more; closing
        twice is harmless.
        """
        gone = self.subscribe()
        stays = self.subscribe(log="x")
        publish(self.broker, WEB, [(TS, "x1", None)])
        gone.unsubscribe()
        gone.unsubscribe()
        publish(self.broker, WEB, [(TS, "x2", None)])
        self.assertEqual(len(gone.received), 1)
        self.assertEqual(len(stays.received), 2)
        stays.unsubscribe()
        self.assertEqual(self.broker.subscribers, ())

    def test_unsubscribeDuringDelivery(self) -> None:
        """
        A subscriber that goes away while being delivered to does not make
        the next one miss the batch.
        """
        leaving = self.subscribe()
        staying = self.subscribe()
        leaving.onDeliver = leaving.unsubscribe
        publish(self.broker, WEB, [(TS, "x", None)])
        self.assertEqual(len(staying.received), 1)
        self.assertEqual(self.broker.subscribers, (staying,))

    def test_publicationInterface(self) -> None:
        """
        L{Broker.publisher} returns an L{IPublication}, as the fake broker does.
        """
        self.assertTrue(verifyObject(IPublication, self.broker.publisher(WEB, "seed")))
        self.assertTrue(verifyObject(IBroker, FakeBroker()))

    def test_twoPublishersOfOneTopic(self) -> None:
        """
        Two publishers of one topic each have a publication: one leaving
        does not drop the route of the other, and the last leaving (with no
        history) forgets the topic; a later publisher is routed afresh.
        """
        self.broker = Broker(Settings(history=0))
        subscriber = self.subscribe(app="myapp")
        first = self.broker.publisher(WEB, "seed")
        second = self.broker.publisher(WEB, "text")
        self.assertEqual([info.publishers for info in self.broker.topics()], [2])
        first.close()
        first.close()
        second.publish([(TS, "still routed", None)], 12)
        self.assertEqual([info.publishers for info in self.broker.topics()], [1])
        second.close()
        self.assertEqual(self.broker.topics(), [])
        publish(self.broker, WEB, [(TS, "afresh", None)])
        self.assertEqual(
            subscriber.text(),
            f"{TS} myapp[web] foobar: still routed\n{TS} myapp[web] foobar: afresh\n",
        )
        self.assertEqual(self.broker.stats.recordsIn, {"text": 1, "test": 1})

    def test_topicsHeldInHistory(self) -> None:
        """
        A topic nobody publishes to any more is listed while history holds
        its records, and forgotten once they are evicted.
        """
        self.broker = Broker(Settings(history=2))
        publish(self.broker, WEB, [(TS, "1", None), (TS, "2", None)])
        [info] = self.broker.topics()
        self.assertEqual((info.topic, info.records, info.last, info.publishers), (WEB, 2, TS, 0))
        other = Topic("other", "p", "h")
        publish(self.broker, other, [("2016-12-06T22:14:22.000", "3", None)])
        self.assertEqual([info.topic for info in self.broker.topics()], [WEB, other])
        publish(self.broker, other, [("2016-12-06T22:14:23.000", "4", None)])
        self.assertEqual([info.topic for info in self.broker.topics()], [other])

    def test_sequenceNumbers(self) -> None:
        """
        Every record gets the next server-wide sequence number, across
        topics and batches; a C{log} filter keeps each record's own.
        """
        everything = FakeSubscriber(Filters(), JSONFormat())
        chosen = FakeSubscriber(Filters.fromQuery({"log": "b"}), JSONFormat())
        self.broker.subscribe(everything)
        self.broker.subscribe(chosen)
        publish(self.broker, WEB, [(TS, "a", None), (TS, "b", None)])
        publish(self.broker, Topic("x", "p", "h"), [(TS, "ab", None), (TS, "c", None)])
        seqs = [json.loads(line)["seq"] for line in everything.text().splitlines()]
        self.assertEqual(seqs, [1, 2, 3, 4])
        seqs = [json.loads(line)["seq"] for line in chosen.text().splitlines()]
        self.assertEqual(seqs, [2, 3])

    def test_groupedByFormat(self) -> None:
        """
        Subscribers of one topic get their own format; those sharing a
        format (and C{log} filter) share the same encoded bytes.
        """
        text = self.subscribe()
        json1 = FakeSubscriber(Filters(), JSONFormat())
        json2 = FakeSubscriber(Filters(), json1.format)
        self.broker.subscribe(json1)
        self.broker.subscribe(json2)
        publish(self.broker, WEB, [(TS, "x", None)])
        self.assertEqual(text.text(), f"{TS} myapp[web] foobar: x\n")
        self.assertEqual(json.loads(json1.text())["log"], "x")
        self.assertIs(json1.received[0].data, json2.received[0].data)
        self.assertEqual(self.broker.stats.linesOut, {"text": 1, "json": 2})

    def test_logFilterPerRecord(self) -> None:
        """
        A C{log} filter picks records from a batch; a matching multi-line record comes whole.
        """
        subscriber = self.subscribe(log="ERROR")
        publish(
            self.broker,
            WEB,
            [(TS, "INFO ok", None), (TS, "ERROR bad\n  detail", None), (TS, "ERROR two", None)],
        )
        head = f"{TS} myapp[web] foobar: "
        self.assertEqual(
            subscriber.received,
            [
                Segment(f"{head}ERROR bad\n{head}  detail\n".encode(), 2, None),
                Segment(f"{head}ERROR two\n".encode(), 1, b"\n"),
            ],
        )

    def test_sharedLogFilterRunsOnce(self) -> None:
        """
        Subscribers with the same C{log} pattern share one search per record.
        """
        calls = []
        compiled = compileFilter("log", "b+")
        assert compiled is not None

        def counted(text: bytes) -> object:
            calls.append(text)
            return compiled.search(text)

        first = FakeSubscriber(Filters(log=Pattern("b+", counted)))
        # The same pattern, compiled apart: it is the text that is shared.
        second = FakeSubscriber(Filters(log=Pattern("b+", compiled.search)))
        firstSubscription = self.broker.subscribe(first)
        self.broker.subscribe(second)
        publish(self.broker, WEB, [(TS, "abc", None), (TS, "xyz", None)])
        self.assertEqual(calls, [b"abc", b"xyz"])
        self.assertEqual(first.text(), f"{TS} myapp[web] foobar: abc\n")
        self.assertEqual(first.received, second.received)
        firstSubscription.close()
        publish(self.broker, WEB, [(TS, "bb", None)])
        self.assertEqual((len(first.received), len(second.received)), (1, 2))

    def test_filterErrorRegistersNothing(self) -> None:
        """
        A subscriber whose filter raises on a cached topic is not left half
        registered.
        """
        publish(self.broker, WEB, [(TS, "x", None)])

        def broken(value: bytes) -> object:
            raise RuntimeError("broken filter")

        self.assertRaises(
            RuntimeError,
            self.broker.subscribe,
            FakeSubscriber(Filters(app=Pattern("broken", broken))),
        )
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
        publish(self.broker, WEB, [(TS, "x", None)])
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
        publish(self.broker, WEB, [(TS, "x", None)])
        self.assertEqual(len(staying.received), 1)
        self.assertEqual(self.broker.subscribers, (staying,))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_noSubscribersNoWork(self) -> None:
        """
        Publishing to a topic nobody wants is counted and delivers nothing.
        """
        publish(self.broker, WEB, [(TS, "x", None)])
        self.assertEqual(self.broker.stats.recordsIn, {"test": 1})
        self.assertEqual(self.broker.stats.linesOut, {})

    def test_hostWithColon(self) -> None:
        """
        The prefix of a multi-line record is repeated whole even if the host holds C{": "}.
        """
        subscriber = self.subscribe()
        publish(self.broker, Topic("a", "p", "h: x"), [(TS, "one\ntwo", None)])
        self.assertEqual(subscriber.text(), f"{TS} a[p] h: x: one\n{TS} a[p] h: x: two\n")

    def test_surrogatesReplaced(self) -> None:
        """
        A lone surrogate from JSON is encoded as C{?}, never an exception.
        """
        subscriber = self.subscribe()
        publish(self.broker, WEB, [(TS, "a\ud800b", None)])
        self.assertEqual(subscriber.text(), f"{TS} myapp[web] foobar: a?b\n")


class IncrementalMatchTests(SynchronousTestCase):
    """
    A new subscriber is matched against many topics a slice per reactor
    turn, missing nothing meanwhile.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.broker = Broker(Settings(), self.clock)
        self.topics = [Topic(f"app{i}", "p", "h") for i in range(MATCH_SLICE * 5)]
        self.publications = [self.broker.publisher(topic, "test") for topic in self.topics]

    def turn(self) -> None:
        """
        One reactor turn: run the calls that were due when it began (a
        fake clock's advance would also run those they schedule).
        """
        due = list(self.clock.calls)
        self.clock.calls.clear()
        for call in due:
            call.func(*call.args, **call.kw)

    def test_slices(self) -> None:
        """
        Each reactor turn matches at most L{MATCH_SLICE} topics; in the end
        the subscriber gets every topic it matches.
        """
        search = CountingSearch("app")
        subscriber = FakeSubscriber(Filters(app=Pattern("app", search)))
        self.broker.subscribe(subscriber)
        self.assertEqual(search.calls, 0)
        self.turn()
        self.assertEqual(search.calls, MATCH_SLICE)
        for _ in range(10):
            self.turn()
        self.assertEqual(search.calls, len(self.topics))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        for publication in self.publications:
            publication.publish([(TS, "x", None)], 1)
        self.assertEqual(len(subscriber.received), len(self.topics))

    def test_nothingMissedMeanwhile(self) -> None:
        """
        A topic published to before its turn is matched then, once.
        """
        search = CountingSearch("app")
        subscriber = FakeSubscriber(Filters(app=Pattern("app", search)))
        self.broker.subscribe(subscriber)
        self.publications[0].publish([(TS, "early", None)], 5)
        self.assertEqual(subscriber.text(), f"{TS} app0[p] h: early\n")
        for _ in range(10):
            self.turn()
        self.assertEqual(search.calls, len(self.topics))

    def test_unsubscribedWhileMatching(self) -> None:
        """
        A subscriber that leaves while being matched is matched no further.
        """
        search = CountingSearch("app")
        subscriber = FakeSubscriber(Filters(app=Pattern("app", search)))
        subscription = self.broker.subscribe(subscriber)
        self.turn()
        subscription.close()
        self.turn()
        self.assertEqual(search.calls, MATCH_SLICE)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class CostlyPatternTests(SynchronousTestCase):
    """
    A C{log} pattern that takes too much CPU on a batch is cut off.
    """

    def test_costlyPatternCutOff(self) -> None:
        """
        A pattern over L{MAX_SEARCH_SECONDS} of CPU on one batch still
        delivers that batch, then its subscribers are disconnected and the
        pattern is remembered as too costly; other subscribers go on.
        """
        times = iter([0.0, 0.001, 1.0, 1.0 + MAX_SEARCH_SECONDS * 2])
        self.patch(broker, "thread_time", lambda: next(times))
        broker_ = Broker(Settings())
        cheap = FakeSubscriber(Filters.fromQuery({"log": "x"}))
        costly = FakeSubscriber(Filters.fromQuery({"log": "[ab]*a[ab]{20}c"}))
        plain = FakeSubscriber(Filters())
        for subscriber in (cheap, costly, plain):
            broker_.subscribe(subscriber)
        with capturedLogs() as events:
            publish(broker_, WEB, [(TS, "x" + "a" * 22 + "c", None)])
        self.assertEqual([len(s.received) for s in (cheap, costly, plain)], [1, 1, 1])
        self.assertEqual((cheap.aborted, costly.aborted), (False, True))
        self.assertEqual(broker_.subscribers, (cheap, plain))
        self.assertEqual(list(broker_.costlyPatterns), ["[ab]*a[ab]{20}c"])
        self.assertIn("took 40 ms of CPU", formatEvent(events[0]))

    def test_searchAllowance(self) -> None:
        """
        The C{log} patterns together may take L{MAX_BATCH_SEARCH_SECONDS} of
        CPU at a stretch, new patterns first and then the cheapest: the
        subscribers of those left are told how many records they missed,
        counted in the stats.  A batch right after finds the allowance
        spent; it refills with time, and then the cheaper go first.
        """
        cpu = [0.0]
        self.patch(broker, "thread_time", lambda: cpu[0])

        def costing(seconds: float) -> Pattern:
            def search(text: bytes) -> object:
                cpu[0] += seconds
                return True

            return Pattern(f"cost {seconds}", search)

        clock = MemoryReactorClock()
        broker_ = Broker(Settings(), clock)
        # Each pattern takes a sixth of the allowance, a little less, on a
        # batch of two records (the later ones a little more): six fit.
        each = MAX_BATCH_SEARCH_SECONDS / 5.5 / 2
        self.assertLess(each * 2, MAX_SEARCH_SECONDS)
        subscribers = [
            FakeSubscriber(Filters(log=costing(each * (1 + n / 1000)))) for n in range(8)
        ]
        for subscriber in subscribers:
            broker_.subscribe(subscriber)

        def delivered(text: str) -> list[int]:
            counts = [subscriber.text().count(f" {text}\n") for subscriber in subscribers]
            for subscriber in subscribers:
                subscriber.received.clear()
            return counts

        with capturedLogs() as events:
            publish(broker_, WEB, [(TS, "one", None), (TS, "two", None)])
        texts = [subscriber.text() for subscriber in subscribers]
        self.assertEqual(delivered("two"), [1] * 6 + [0] * 2)
        for text in texts[6:]:
            self.assertIn("2 records were not searched", text)
        self.assertEqual(broker_.stats.recordsUnsearched, 4)
        self.assertEqual(broker_.subscribers, tuple(subscribers))
        [event] = events
        self.assertIn("2 records were not searched for 2 subscribers", formatEvent(event))
        # At once, nothing is left to spend.
        publish(broker_, WEB, [(TS, "three", None), (TS, "four", None)])
        self.assertEqual(delivered("four"), [0] * 8)
        self.assertEqual(broker_.stats.recordsUnsearched, 20)
        # Once it has refilled, the two never searched are free so far and
        # go first, then the cheapest four.
        clock.advance(2 * MAX_BATCH_SEARCH_SECONDS / SEARCH_SHARE)
        publish(broker_, WEB, [(TS, "five", None), (TS, "six", None)])
        self.assertEqual(delivered("six"), [1] * 4 + [0] * 2 + [1] * 2)
        self.assertEqual(broker_.stats.recordsUnsearched, 24)
