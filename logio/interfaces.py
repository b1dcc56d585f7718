"""
The interfaces between logio's parts: publishers feed an L{IBroker} through
an L{IPublication} per topic; the broker fans records out to
L{ISubscriber}s, each encoded by its L{IFormat}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from zope.interface import Attribute, Interface

from logio.topic import Record, Topic

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from logio.filters import Filters
    from logio.formats import Encoder, Segment
    from logio.history import Replay
    from logio.stats import TopicInfo


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

    filters = Attribute("The L{logio.filters.Filters} that choose what this subscriber receives.")
    format = Attribute("The L{IFormat} this subscriber's output is encoded in.")

    def deliver(segment: Segment) -> None:
        """
        Take a piece of encoded output (which may be shared with other
        subscribers: never change it).
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


class IPublication(Interface):
    """
    One publisher's handle on one topic.
    """

    def publish(records: list[Record], size: int) -> None:
        """
        Fan a batch of records out to every matching subscriber and keep it
        in history.  The broker keeps C{records}: never change it after.

        @param records: C{(timestamp, text)} pairs, oldest first.
        @param size: About how many bytes of input the batch took, for
            history's byte bound.
        """

    def close() -> None:
        """
        The publisher is done with this topic.  Closing twice does nothing.
        """


class IBroker(Interface):
    """
    The hub: publisher protocols hand it records, subscribers register with
    it to receive the ones they match.
    """

    stats = Attribute("The server's L{logio.stats.Stats}.")
    history = Attribute("The L{logio.history.History} of records held for replay.")
    costlyPatterns = Attribute(
        "The texts of C{log} patterns found too costly to match at run time: refused."
    )

    def publisher(topic: Topic, protocol: str) -> IPublication:
        """
        A handle for publishing to C{topic} over the wire protocol named
        C{protocol} (for the metrics).  Several publishers of one topic
        each have their own.
        """

    def subscribe(subscriber: ISubscriber) -> None:
        """
        Start delivering matching records to C{subscriber}.
        """

    def unsubscribe(subscriber: ISubscriber) -> None:
        """
        Stop delivering to C{subscriber}; unknown subscribers are ignored.
        """

    def subscriberCount() -> int:
        """
        How many subscribers there are.
        """

    def replay(filters: Filters, tail: int, after: Optional[int] = None) -> Replay:
        """
        The records in history that match C{filters}: the last C{tail}, or,
        if C{after} is given, every one after that sequence number.  Call
        L{subscribe} in the same reactor turn for a stream with no gap and
        no duplicate.
        """

    def topics() -> Sequence[TopicInfo]:
        """
        Every topic the broker knows of: publishing now, or in history.
        """
