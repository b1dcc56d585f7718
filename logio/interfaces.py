# -*- test-case-name: tests.test_broker -*-
"""
The interfaces between logio's parts, and the small values that cross them:
publishers feed an L{IBroker} through an L{IPublication} per topic; the
broker keeps records in an L{IHistory} and fans them out to
L{ISubscriber}s, each encoded by its L{IFormat} into L{Segment}s.

This module imports no implementation: only leaf value modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, Union

from attrs import frozen
from zope.interface import Attribute, Interface

from logio.topic import Record, Topic

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.web.server import Request

    from logio.http import Sink
    from logio.stats import TopicInfo
    from logio.timerange import TimeRange


@frozen
class Segment:
    """
    A piece of output for one subscriber's queue.

    @ivar data: Complete records, UTF-8.
    @ivar lines: How many output lines the queue counts for C{data}: the
        text format's physical lines, one per record in the others.
    @ivar end: What ends each record in C{data} and appears nowhere else in
        it, so the queue may cut after any of them; L{None} if C{data} is
        one record that must be dropped whole.
    """

    data: bytes
    lines: int
    end: Optional[bytes]


#: Encode a batch of one topic's records, given each record's sequence
#: number, into segments.
Encoder = Callable[[Sequence[Record], Sequence[int]], list[Segment]]


@frozen
class Run:
    """
    Consecutive replayed records of one topic.

    @ivar seqs: Each record's sequence number.
    """

    topic: Topic
    records: list[Record]
    seqs: list[int]


@frozen
class Replay:
    """
    What history holds for a new subscriber.

    @ivar runs: The matching records, oldest first.
    @ivar missed: How many records (of any topic) after the id the
        subscriber resumes from are no longer held.
    """

    runs: list[Run]
    missed: int = 0


class IGrant(Interface):
    """
    What a token lets its bearer do (see L{logio.auth.Grant}); the grant of
    a request on a server with C{--auth} is a component of the request.
    """

    publish = Attribute("Whether it may publish.")
    subscribe = Attribute("Whether it may subscribe and read the server's reports.")

    def allows(app: str) -> bool:
        """
        Whether it may publish to or read the app C{app}.
        """

    def check(app: str, role: str = "publish") -> None:
        """
        Check that it may C{role} to or from the app C{app}.

        @raise logio.auth.Denied: If it may not.
        """


class IFilters(Interface):
    """
    What one subscriber asked for (see L{logio.filters.Filters}): a pattern
    per field, or L{None} for a field that matches everything.
    """

    log = Attribute(
        "The C{log} pattern (a L{logio.filters.Pattern}: C{text} and C{search}), or L{None}."
    )
    level = Attribute(
        "The L{logio.levels.RANK} of the least severe level kept (C{?level=}), or L{None}: "
        "every record, with a level or not."
    )
    access = Attribute(
        "The L{IGrant} of the subscriber's token on a server with C{--auth}, or L{None}."
    )

    def exactApp() -> Optional[str]:
        """
        The one app the C{app} pattern can match, when it is one anchored
        literal (C{^myapp$}); L{None} otherwise.  So a new topic is matched
        only against the subscribers that name its app, and those that
        name none.
        """

    def matchesTopic(topic: Topic) -> bool:
        """
        Whether records of C{topic} can reach the subscriber (the C{log}
        pattern is applied per record, not here).
        """


class IFormat(Interface):
    """
    An output format: turns batches of records into bytes, once for every
    subscriber that shares it.
    """

    name = Attribute("The format's name in C{?format=}: C{text}, C{json}, C{sse}.")
    contentType = Attribute("The response's C{Content-Type}, as bytes.")
    keepAlive = Attribute(
        "Bytes to send a subscriber after a long silence so proxies keep the "
        "stream open, or L{None} for formats that have no such thing."
    )

    def encoder(topic: Topic) -> Encoder:
        """
        The encoder for batches of C{topic}'s records: called with the
        records and their sequence numbers, it returns L{Segment}s.
        """

    def lines(records: Sequence[Record]) -> int:
        """
        How many output lines C{records} make in this format, as a
        subscriber's queue counts them (L{Segment.lines}), without encoding
        them.
        """

    def notice(stamp: str, message: str, dropped: Optional[int] = None) -> bytes:
        """
        A notice from the server to one subscriber (it bypasses filters).

        @param stamp: The output timestamp of now.
        @param message: What to say.
        @param dropped: How many lines the notice reports as lost, if any.
        """


class ISubscriber(Interface):
    """
    One live subscription: filters, a format, and a destination for the
    output that matches.
    """

    filters = Attribute("The L{IFilters} that choose what this subscriber receives.")
    format = Attribute("The L{IFormat} this subscriber's output is encoded in.")

    def deliver(segment: Segment) -> None:
        """
        Take a piece of encoded output (which may be shared with other
        subscribers: never change it).
        """

    def lost(count: int, message: str) -> None:
        """
        Tell the subscriber, with C{message}, that C{count} records will
        never reach it; the count is never lost, even if its queue is full.
        """

    def room() -> int:
        """
        The most bytes of a segment delivered now that the subscriber could
        keep: of a larger one it would keep the newest records that fit, in
        at most this many bytes, and drop the older ones.
        """

    def skip(lines: int) -> None:
        """
        C{lines} output lines, older than the segment delivered next, were
        left unencoded because the subscriber could not have kept them:
        count them as dropped, as if it had dropped them itself (that
        segment is larger than its L{room}, so a notice of the drops follows
        it).
        """

    def close() -> Deferred[tuple[int, int]]:
        """
        End the subscription cleanly (the server is stopping): send what is
        queued, end the response, and fire when the connection is closed,
        or a few seconds later, with what the client never got: the lines of
        the queue sent now, and the bytes of output written before.
        """

    def abort() -> None:
        """
        Drop the subscriber's connection at once, queue and all: delivering
        to it failed, so it cannot be trusted to end cleanly.
        """


class ISubscription(Interface):
    """
    A subscriber's registration with the broker, as L{IBroker.subscribe}
    returns it.
    """

    def close() -> None:
        """
        Stop delivering to the subscriber.  Closing twice does nothing.
        """


class IPublication(Interface):
    """
    One publisher's handle on one topic.
    """

    def publish(records: list[Record], size: int) -> None:
        """
        Fan a batch of records out to every matching subscriber and keep it
        in history.  The broker keeps C{records}: never change it after.

        @param records: C{(timestamp, text, level)} triples, oldest first.
        @param size: About how many bytes of input the batch took, for
            history's byte bound.
        """

    def close() -> None:
        """
        The publisher is done with this topic.  Closing twice does nothing.
        """


class IHistory(Interface):
    """
    The records kept for replay: it numbers every record and keeps the
    newest, within its bounds.
    """

    epoch = Attribute(
        "The first part of the event id of every record held, C{<epoch>-<seq>}: what tells "
        "an id of these records from one of other records (another run, another store)."
    )
    evicted = Attribute(
        "Called with a batch's owner and a count when that many of its records are no "
        "longer held (the broker sets it)."
    )
    holder = Attribute(
        "Called with a topic, a count and the newest record's time for each batch held from "
        "before this run (a store's), when it is read back; returns the batch's owner (the "
        "broker sets it)."
    )
    maxRecords = Attribute("The most records held (0: none are).")
    next = Attribute("The sequence number the next record gets.")
    oldest = Attribute("The sequence number of the oldest record held (C{next} when none is).")
    records = Attribute("How many records are held.")
    bytes = Attribute("About how many bytes they cost.")

    def add(owner: Any, records: list[Record], size: int) -> int:
        """
        Number a batch of records and keep it.

        @param owner: Where the batch comes from: anything with a C{topic}.
        @param size: About how many bytes of input the batch took.
        @return: The first record's sequence number; the others follow.
        """

    def replay(
        filters: IFilters,
        tail: int,
        after: Optional[int] = None,
        window: Optional[TimeRange] = None,
    ) -> Replay:
        """
        The held records that match C{filters}, and whose time is in
        C{window} if one is given: the newest C{tail} of them, or, if
        C{after} is given, all of those after that sequence number.
        """

    def deeper(
        filters: IFilters,
        need: Optional[int],
        after: Optional[int],
        window: Optional[TimeRange],
        below: int,
    ) -> Optional[Iterator[Union[Run, None, Deferred[Any]]]]:
        """
        The matching records older than those L{replay} reads, if this
        history holds any (a store on disk does, and a cluster's stream),
        read a batch at a time: an iterator of runs, oldest first, of
        L{None} where it paused between batches, and of a L{Deferred}
        where it waits for one (the cooperator that runs it waits too); or
        L{None} if there are none to read.

        @param need: How many of the newest matching records below
            C{below} are wanted (for a C{tail}), or L{None} for all of those
            after C{after} and in C{window}.
        @param below: The sequence number the records read stop before.
        """

    def topics() -> Sequence[TopicInfo]:
        """
        The topics this history holds records of beyond memory (a store's,
        within its retention), with how many and the time of the newest.
        """

    def metrics() -> Sequence[tuple[str, str, str, float]]:
        """
        What this history adds to C{/metrics}: C{(kind, name,
        documentation, value)}, the kind C{gauge} or C{counter}.
        """


class IRelay(Interface):
    """
    What takes the records published on one node to every node of a
    cluster, and brings them back numbered (to L{IBroker.deliver}).
    """

    def send(topic: Topic, records: list[Record], size: int) -> bool:
        """
        Take a batch published here to the cluster.

        @param size: About how many bytes of input the batch took.
        @return: Whether it was taken; if not (the cluster cannot be
            reached), the broker delivers it here alone.
        """

    hold = Attribute(
        "Called with True when the relay falls behind (stop reading the publishers), "
        "False when it has caught up."
    )

    def state() -> str:
        """
        The link's state, for C{/healthz}: C{joined}, or C{alone} and why.
        """

    def metrics() -> Sequence[tuple[str, str, str, float]]:
        """
        What the link adds to C{/metrics}, as L{IHistory.metrics}.
        """


class IBroker(Interface):
    """
    The hub: publisher protocols hand it records, subscribers register with
    it to receive the ones they match.
    """

    stats = Attribute("The server's L{logio.stats.Stats}.")
    start = Attribute(
        "The instant the server's ids are counted from, in milliseconds since the epoch: "
        "the first part of every SSE id."
    )
    history = Attribute("The L{IHistory} of records held for replay.")
    costlyPatterns = Attribute(
        "The texts of C{log} patterns found too costly to match at run time: refused."
    )
    relay = Attribute("With C{--cluster}, the L{IRelay} published records go through.")
    epochObservers = Attribute(
        "Callables told the new epoch when it changes (a cluster node joins its cluster)."
    )

    def deliver(topic: Topic, records: list[Record], first: int, size: int) -> None:
        """
        Keep and fan out a batch the cluster numbered, its records C{first}
        on; those numbered below what history holds already are skipped.
        """

    def unrelayed(topic: Optional[Topic], count: int) -> None:
        """
        Tell the subscribers of C{topic} (every one, if L{None}) that
        C{count} records of the cluster will never reach them.
        """

    def changeEpoch(epoch: int) -> None:
        """
        Number from now on in C{epoch}, and tell L{epochObservers}.
        """

    def publisher(topic: Topic, protocol: str) -> IPublication:
        """
        A handle for publishing to C{topic} over the wire protocol named
        C{protocol} (for the metrics).  Several publishers of one topic
        each have their own.
        """

    def subscribe(subscriber: ISubscriber) -> ISubscription:
        """
        Start delivering matching records to C{subscriber}, until the
        returned subscription is closed.
        """

    def subscriberCount() -> int:
        """
        How many subscribers there are.
        """

    def replay(
        filters: IFilters,
        tail: int,
        after: Optional[int] = None,
        window: Optional[TimeRange] = None,
    ) -> Replay:
        """
        The records in history that match C{filters} (and C{window}): the
        last C{tail}, or, if C{after} is given, every one after that
        sequence number.  Call
        L{subscribe} in the same reactor turn for a stream with no gap and
        no duplicate.
        """

    def topics() -> Sequence[TopicInfo]:
        """
        Every topic the broker knows of: publishing now, or in history.
        """


class IHTTPIngest(Interface):
    """
    HTTP ingest, as the subscriber port's site serves it: the site knows
    its paths, not how records are read.
    """

    publish = Attribute("What answers C{POST /publish} once its body has streamed in.")
    otlp = Attribute("What answers C{POST /v1/logs}.")

    def publishBody(request: Request) -> Sink:
        """
        The sink a C{POST /publish} body is published from as it streams
        in.

        @raise logio.http.Refused: If the request cannot publish (a bad
            topic in its query).
        """
