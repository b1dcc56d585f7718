"""
What every publisher wire protocol shares: topic validation, the error
path, and socket options.
"""

from __future__ import annotations

import re

from twisted.internet.interfaces import IReactorTime, ITransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from logio.interfaces import IBroker, IPublication
from logio.net import peerHost
from logio.topic import Record, Topic, formatEpoch


class PublisherError(Exception):
    """
    The publisher sent something we cannot accept; the message is written
    back to it before the connection is closed.
    """


#: The longest topic field accepted: the topic is repeated on every line.
MAX_TOPIC_FIELD = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safeText(text: str) -> str:
    """
    C{text} with lone surrogates (which JSON's C{\\ud800} escapes can
    produce, and which cannot be encoded or searched) replaced by C{?}.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def makeTopic(app: object, proc: object, host: object, peer: str) -> Topic:
    """
    Validate a topic: C{app} is required, a missing C{proc} becomes C{-}
    and a missing C{host} becomes the publisher's address.  Fields are at
    most L{MAX_TOPIC_FIELD} characters without control characters, so a
    topic cannot forge or blow up the output lines it prefixes.

    @raise PublisherError: If a field is missing, not a string, too long or
        holds a control character.
    """
    for name, value in (("app", app), ("proc", proc), ("host", host)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise PublisherError(f"topic field {name!r} must be a string")
        if len(value) > MAX_TOPIC_FIELD:
            raise PublisherError(
                f"topic field {name!r} is longer than {MAX_TOPIC_FIELD} characters"
            )
        if _CONTROL.search(value):
            raise PublisherError(f"topic field {name!r} holds a control character")
    if not app:
        raise PublisherError("the topic needs a non-empty 'app'")
    assert isinstance(app, str)
    return Topic(safeText(app), safeText(proc or "-"), safeText(host or peer))  # type: ignore[arg-type]


class Publisher:
    """
    Mixin for publisher protocols: the broker they feed, and how they give
    up on a connection.

    @ivar protocolName: The wire protocol's name, for the metrics.
    @ivar topic: The connection's topic, once it has been received.
    @ivar failed: Whether the connection was refused; later data is ignored.
    """

    log = Logger()
    protocolName: str
    transport: ITransport | None
    topic: Topic | None = None
    _publication: IPublication | None = None
    failed = False

    def __init__(self, broker: IBroker, clock: IReactorTime, maxLine: int) -> None:
        self.broker = broker
        self.clock = clock
        self.maxLine = maxLine

    _nowMillis = -1
    _nowText = ""

    def now(self) -> str:
        """
        The server's current time as an output timestamp (formatted once
        per millisecond).
        """
        seconds = self.clock.seconds()
        millis = int(seconds * 1000)
        if millis != self._nowMillis:
            self._nowMillis = millis
            self._nowText = formatEpoch(seconds)
        return self._nowText

    def setTopic(self, topic: Topic) -> None:
        """
        The connection's topic has arrived: publish to it from now on.
        """
        self.topic = topic
        self._publication = self.broker.publisher(topic, self.protocolName)

    def publish(self, records: list[Record], size: int) -> None:
        """
        Hand a batch of records to the broker, if the topic is known.

        @param size: About how many bytes of input the batch took.
        """
        if records and self._publication is not None:
            self._publication.publish(records, size)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Let go of the topic.  What the connection's input lost or changed on
        the way is logged.
        """
        if self._publication is not None:
            self._publication.close()
        changes = self.changes()
        if changes:
            self.log.info(
                "Publisher {peer} ({topic}) went away; {changes}",
                peer=peerHost(self.transport),
                topic=self.topic,
                changes=changes,
            )

    def changes(self) -> str:
        """
        What this connection's input lost or changed on the way, for the
        log; empty if nothing.
        """
        return ""

    def fail(self, message: str) -> None:
        """
        Write one error line back to the publisher and close the connection.
        """
        self.failed = True
        self.broker.stats.refusals["publisher"] += 1
        self.log.warn(
            "Publisher {peer} refused: {reason}", peer=peerHost(self.transport), reason=message
        )
        assert self.transport is not None
        self.transport.write(f"error: {message}\n".encode("utf-8", "replace"))
        self.transport.loseConnection()
