"""
The interfaces between logio's parts: publishers feed an L{IBroker}, which
fans records out to L{ISubscriber}s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

from logio.topic import Record, Topic

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred


class ISubscriber(Interface):
    """
    One live subscription: topic filters, an optional log filter, and a
    destination for the lines that match.
    """

    filters = Attribute(
        "The L{logio.broker.Filters} that choose which records this subscriber receives."
    )

    def deliver(data: bytes, lines: int, whole: bool) -> None:
        """
        Take some formatted output lines.

        @param data: One or more complete output lines, UTF-8.
        @param lines: How many lines C{data} holds.
        @param whole: C{True} if every line is a record of its own, so a
            queue may drop part of C{data} at any line boundary; C{False} if
            C{data} is one multi-line record that must be dropped whole.
        """

    def close() -> Deferred[object]:
        """
        End the subscription cleanly (the server is stopping): send what is
        queued, end the response, and fire when the connection is closed.
        """

    def abort() -> None:
        """
        Drop the subscriber's connection at once, queue and all: delivering
        to it failed, so it cannot be trusted to end cleanly.
        """


class IBroker(Interface):
    """
    The hub: publisher protocols hand it records, subscribers register with
    it to receive the ones they match.
    """

    def publish(topic: Topic, records: list[Record]) -> None:
        """
        Fan a batch of records from one topic out to every matching
        subscriber, formatting each record once.

        @param topic: Where the records come from.
        @param records: C{(timestamp, text)} pairs, oldest first.
        """

    def subscribe(subscriber: ISubscriber) -> None:
        """
        Start delivering matching records to C{subscriber}.
        """

    def unsubscribe(subscriber: ISubscriber) -> None:
        """
        Stop delivering to C{subscriber}; unknown subscribers are ignored.
        """

    def forget(topic: Topic) -> None:
        """
        A publisher of C{topic} went away: drop what is cached about it.
        """
