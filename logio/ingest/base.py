# -*- test-case-name: tests.test_publish -*-
"""
What every publisher wire protocol shares: topic validation, the error
path, and the end of a connection.
"""

from __future__ import annotations

import json
from typing import Optional, cast

from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from logio import formats
from logio.auth import Denied, Tokens
from logio.fields import fieldProblem
from logio.interfaces import IBroker, IPublication
from logio.net import LINGER, peerHost
from logio.refusals import Refusals
from logio.topic import Record, Topic, formatEpoch


class PublisherError(Exception):
    """
    The publisher sent something we cannot accept; the message is written
    back to it before the connection is closed.

    @ivar cause: A short fixed text naming the kind of error, for the
        rate-limited refusal log.
    """

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def refuse(
    transport: ITransport, refusals: Refusals, message: str, cause: str, linger: bool = False
) -> None:
    """
    Count and log a refused publisher, write one error line back to it and
    close its connection; or, to C{linger}, only its writing side, where
    the transport can.
    """
    refusals.refuse("publisher", cause, f"{peerHost(transport)}: {message}")
    transport.write(f"error: {message}\n".encode("utf-8", "replace"))
    if linger and ITCPTransport.providedBy(transport):
        try:
            transport.loseWriteConnection()
            return
        except (AttributeError, NotImplementedError):
            pass
    transport.loseConnection()


#: What a publisher is told when the server stops reading it at shutdown:
#: a server that closes without a word is not a logio server (a TLS port,
#: say), and clients tell their users so.
SHUTTING_DOWN = f"logio: {formats.SHUTTING_DOWN}\n".encode()

#: The refusal cause of a topic that is not valid.
BAD_TOPIC = "invalid topic"

#: How a publisher on the publisher port presents its token.
TOPIC_TOKEN = (
    'send it in the topic ("token" in seed JSON, token= in a text topic line, '
    "logio://TOKEN@host in a URL)"
)


def checkAccess(
    tokens: Optional[Tokens], token: object, app: str, howTo: str = TOPIC_TOKEN
) -> None:
    """
    Check that C{token} may publish to C{app}, if the server has C{tokens}
    (see L{Tokens.check}).

    @param howTo: How this source presents a token, for a publisher that
        sent none.
    @raise PublisherError: If it may not, saying why (never with the token).
    """
    if tokens is None:
        return
    if token is not None and not isinstance(token, str):
        raise PublisherError("topic field 'token' must be a string", BAD_TOPIC)
    try:
        tokens.check(token, "publish", app, howTo)
    except Denied as e:
        raise PublisherError(str(e), e.cause) from None


def safeText(text: str) -> str:
    """
    C{text} with lone surrogates (which JSON's C{\\ud800} escapes can
    produce, and which cannot be encoded or searched) replaced by C{?}.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def cleanText(raw: object) -> str:
    """
    The log text of a record: C{raw} as a string (a value that is not a
    string as JSON), without its trailing newline (and carriage return).
    """
    if not isinstance(raw, str):
        raw = json.dumps(raw, ensure_ascii=False)
    text = safeText(raw)
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    return text


def makeTopic(app: object, proc: object, host: object, peer: str) -> Topic:
    """
    Validate a topic: C{app} is required, a missing C{proc} becomes C{-}
    and a missing C{host} becomes the publisher's address.  Fields follow
    L{logio.fields}: short, and without what could forge or blow up the
    output lines they prefix.

    @raise PublisherError: If a field is missing, not a string, or breaks a
        rule of L{fieldProblem}.
    """
    for name, value in (("app", app), ("proc", proc), ("host", host)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise PublisherError(f"topic field {name!r} must be a string", BAD_TOPIC)
        problem = fieldProblem(name, value)
        if problem is not None:
            raise PublisherError(problem, BAD_TOPIC)
    if not app:
        raise PublisherError("the topic needs a non-empty 'app'", BAD_TOPIC)
    assert isinstance(app, str)
    return Topic(safeText(app), safeText(proc or "-"), safeText(host or peer))  # type: ignore[arg-type]


@implementer(IHalfCloseableProtocol)
class Publisher:
    """
    Mixin for publisher protocols: the broker they feed, and how they give
    up on a connection.

    A publisher that half-closes its connection is told, once its stream is
    read, whether the stream ended cleanly (see L{endOfStream}).

    @ivar protocolName: The wire protocol's name, for the metrics.
    @ivar topic: The connection's topic, once it has been received.
    @ivar failed: Whether the connection was refused; later data is ignored.
    @ivar stopped: Whether the server stopped reading it (see
        L{stopReading}); later data is ignored.
    """

    log = Logger()
    protocolName: str
    transport: ITransport | None
    topic: Topic | None = None
    _publication: IPublication | None = None
    failed = False
    stopped = False

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        maxLine: int,
        refusals: Refusals,
        tokens: Optional[Tokens] = None,
    ) -> None:
        self.broker = broker
        self.clock = clock
        self.maxLine = maxLine
        self.refusals = refusals
        self.tokens = tokens
        self._token: object = None

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

    def setTopic(self, topic: Topic, token: object) -> None:
        """
        The connection's topic has arrived with C{token}: publish to it
        from now on, if the token may.

        @raise PublisherError: If the token may not (see L{checkAccess}).
        """
        checkAccess(self.tokens, token, topic.app)
        self._token = token
        self.topic = topic
        self._publication = self.broker.publisher(topic, self.protocolName)

    def recheck(self) -> None:
        """
        The tokens were reloaded: refuse the publisher if its token may no
        longer publish to its topic.
        """
        if self.topic is None or self.failed or self.stopped:
            return
        try:
            checkAccess(self.tokens, self._token, self.topic.app)
        except PublisherError as e:
            self.fail(f"{e} (the tokens were reloaded)", e.cause)

    def publish(self, records: list[Record], size: int) -> None:
        """
        Hand a batch of records to the broker, if the topic is known.

        @param size: About how many bytes of input the batch took.
        """
        if records and self._publication is not None:
            self._publication.publish(records, size)

    def endOfStream(self) -> PublisherError | None:
        """
        The publisher's stream has ended: publish what is still buffered
        (a last line without its newline).

        @return: What is wrong with how the stream ended (it stopped inside
            a value), or L{None}.
        """
        return None

    def stopReading(self) -> None:
        """
        The server is shutting down: read nothing more from this publisher,
        publish what was already read, and close the connection.
        """
        assert self.transport is not None
        cast(IPushProducer, self.transport).pauseProducing()
        if not (self.failed or self.stopped):
            self.stopped = True
            self.endOfStream()
            self.transport.write(SHUTTING_DOWN)
        self.transport.loseConnection()

    def readConnectionLost(self) -> None:
        """
        The publisher half-closed its connection: its stream is complete.
        Publish what is left, say what was wrong with its end (if anything),
        and close.
        """
        if self.failed or self.stopped:
            if self.failed and self.transport is not None:
                # A refused client that has read its error line.
                self.transport.loseConnection()
            return
        self.stopped = True
        error = self.endOfStream()
        assert self.transport is not None
        if error is None:
            self.transport.loseConnection()
        else:
            self.fail(str(error), error.cause)

    def writeConnectionLost(self) -> None:
        """
        Nothing: the server half-closes a publisher's connection only to
        linger after refusing it (see L{Publisher.fail}).
        """

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Let go of the topic, after publishing what is left of the stream.
        What the connection's input lost or changed on the way is logged;
        a stream that ended inside a value is counted and logged as a
        refusal.
        """
        if not (self.failed or self.stopped):
            self.stopped = True
            error = self.endOfStream()
            if error is not None:
                self.refusals.refuse(
                    "publisher", error.cause, f"{peerHost(self.transport)}: {error}"
                )
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

    def fail(self, message: str, cause: str) -> None:
        """
        Refuse the publisher: write one error line back to it and end the
        connection (see L{refuse}).  A client that was still writing would
        have its connection reset by a close with its input unread, and
        lose the line: so the server stops writing, and reads and discards
        what comes for up to L{LINGER} seconds, or until the client closes.
        """
        self.failed = True
        transport = self.transport
        assert transport is not None
        refuse(transport, self.refusals, message, cause, linger=True)
        if not transport.disconnecting:  # type: ignore[attr-defined]
            self.clock.callLater(LINGER, transport.loseConnection)


#: How many topics one source of many topics (a syslog connection, an HTTP
#: upload, the UDP port) keeps a publication open for.
MAX_TOPICS = 1024


class Publications:
    """
    The publications of a source whose records name their own topics:
    opened on first use, the least recently used closed past
    L{MAX_TOPICS}.
    """

    def __init__(self, broker: IBroker, protocol: str) -> None:
        self._broker = broker
        self._protocol = protocol
        self._open: dict[Topic, IPublication] = {}

    def publish(self, batches: dict[Topic, list[Record]], size: int) -> None:
        """
        Publish each topic's records, sharing C{size} (bytes of input) out
        by record.
        """
        count = sum(len(records) for records in batches.values())
        for topic, records in batches.items():
            self._publication(topic).publish(records, size * len(records) // max(count, 1))

    def _publication(self, topic: Topic) -> IPublication:
        publications = self._open
        publication = publications.pop(topic, None)
        if publication is None:
            if len(publications) >= MAX_TOPICS:
                publications.pop(next(iter(publications))).close()
            publication = self._broker.publisher(topic, self._protocol)
        publications[topic] = publication
        return publication

    def close(self) -> None:
        """
        Close every publication.
        """
        for publication in self._open.values():
            publication.close()
        self._open.clear()
