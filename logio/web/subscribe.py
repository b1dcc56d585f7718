# -*- test-case-name: tests.test_web -*-
"""
The subscribe endpoint: every path but the reserved ones.  A request's
query becomes filters, a format and what to replay; the request becomes a
L{Stream} registered with the broker until the client goes away.
"""

from __future__ import annotations

from datetime import datetime
from typing import Mapping, Optional

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Cooperator, LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from logio.auth import Grant, Tokens, grantOf
from logio.filters import FILTER_FIELDS, BadFilter, Filters
from logio.formats import JSONFormat, SSEFormat, TextFormat, chooseFormat, parseEventId
from logio.http import reply
from logio.interfaces import IBroker, IFormat, ISubscription
from logio.net import PAUSE_AT, describePeer, tuneSocket, widenWrites
from logio.refusals import Refusals
from logio.settings import Settings
from logio.timerange import TimeRange, parseRange
from logio.topic import formatEpoch, serverHost
from logio.web.channel import hideToken, startStreaming
from logio.web.gate import presented
from logio.web.replay import Replayer
from logio.web.stream import QueueBudget, Stream

#: The query parameters of a subscription.
PARAMETERS = (
    *FILTER_FIELDS,
    "level",
    "since",
    "until",
    "tail",
    "follow",
    "format",
    "ansi",
    "last_event_id",
    "token",
)
#: C{ansi=} values: whether the text output keeps colour sequences raw.
_ANSI = {"keep": True, "escape": False}
#: C{follow=} values, and what each means.
_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
#: A keep-alive goes to a stream that has been silent for this many
#: seconds (give or take one sweep).
KEEP_ALIVE = 15.0
_SWEEPS = 3


class BadRequest(Exception):
    """
    A subscription request that cannot be served; the message says why.
    """


@frozen
class _Asked:
    """
    What a subscription request asked for.

    @ivar after: The sequence number to resume after, if any.
    @ivar stale: An event id from an earlier run of the server, if given.
    @ivar window: The time range of C{since} and C{until}, if given.
    """

    filters: Filters
    format: IFormat
    tail: int
    follow: bool
    after: Optional[int]
    stale: Optional[str]
    window: Optional[TimeRange] = None


class SubscribeResource(Resource):
    """
    Any path but the reserved ones: C{GET /?app=RE&proc=RE&host=RE&log=RE}
    streams every matching record until the client goes away, in the
    format asked for; C{tail}, C{last_event_id} and C{follow} replay
    history first, or only.  HEAD checks the request and returns the
    headers only.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        broker: IBroker,
        clock: IReactorTime,
        settings: Settings,
        refusals: Refusals,
        tokens: Optional[Tokens] = None,
    ) -> None:
        super().__init__()
        self._broker = broker
        self._clock = clock
        self._settings = settings
        self._budget = QueueBudget(settings.maxQueuedBytes)
        self._refusals = refusals
        #: Open subscription requests, live or replaying.
        self._open = 0
        #: How many open subscriptions use each C{log} pattern.
        self._logFilters: dict[str, int] = {}
        maxBytes = settings.bufferBytes
        #: The byte bound covers the queue and the transport's buffer both.
        #: The transport pauses a stream at a quarter of it, up to
        #: PAUSE_AT; but a small bound gives up to half of it, up to 256 KiB:
        #: a stream paused much earlier than its socket's send limit (see
        #: L{logio.net.SEND_LIMIT}) queues, and loses, lines it could send.
        self._pauseAt = max(min(PAUSE_AT, maxBytes // 4), min(256 * 1024, maxBytes // 2))
        sse = SSEFormat(broker.start)
        # Ids go on in a new epoch when a cluster node joins its cluster.
        broker.epochObservers.append(lambda epoch: setattr(sse, "start", epoch))
        self.formats: Mapping[str, IFormat] = {
            format.name: format for format in (TextFormat(serverHost()), JSONFormat(), sse)
        }
        self._replayer = Replayer(
            broker, Cooperator(scheduler=lambda work: clock.callLater(0, work))
        )
        #: The text format of C{?ansi=keep}: colour sequences raw.
        self._coloured = TextFormat(serverHost(), keepSGR=True)
        #: The live streams: their broker subscriptions.
        self._live: dict[Stream, ISubscription] = {}
        self._quiet: dict[Stream, int] = {}
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock
        #: The open streams of a server with C{--auth}: the token each
        #: presented, and what it allowed then.
        self._granted: dict[Stream, tuple[str, Grant]] = {}
        self._tokens = tokens
        if tokens is not None:
            tokens.watch(self._tokensReloaded)

    def _parse(self, request: Request) -> _Asked:
        """
        Read a subscription request's parameters and headers.

        @raise BadRequest: If any is unknown or malformed.
        """
        args = {
            name.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
            for name, values in (request.args or {}).items()
        }
        unknown = sorted(set(args) - set(PARAMETERS))
        if unknown:
            raise BadRequest(
                f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))}: use {' '.join(PARAMETERS)}"
            )
        if args.get("log") in self._broker.costlyPatterns:
            raise BadRequest(
                f"bad regular expression for 'log': {args['log'][:200]!r}: it was too costly "
                "to match on the records published here"
            )
        try:
            filters = Filters.fromQuery(
                {name: args[name] for name in (*FILTER_FIELDS, "level") if name in args},
                grantOf(request),
            )
            format = chooseFormat(self.formats, args.get("format"), request.getHeader(b"accept"))
        except (BadFilter, ValueError) as e:
            raise BadRequest(str(e)) from None
        keepSGR = _ANSI.get((args.get("ansi") or "escape").lower())
        if keepSGR is None:
            raise BadRequest(f"ansi must be keep or escape, not {args['ansi'][:40]!r}")
        if keepSGR and format.name == "text":
            format = self._coloured
        tail = args.get("tail") or "0"
        if not (tail.isascii() and tail.isdigit() and len(tail) < 10):
            raise BadRequest(f"tail must be a number of records, not {tail!r}")
        follow = _BOOLEANS.get((args.get("follow") or "1").lower())
        if follow is None:
            raise BadRequest(f"follow must be 1 or 0, not {args['follow']!r}")
        try:
            window = parseRange(args.get("since"), args.get("until"), self._clock.seconds())
        except ValueError as e:
            raise BadRequest(str(e)) from None
        if window is not None and window.until is not None:
            # A range that is over is answered and ends.
            follow = follow and window.until > formatEpoch(self._clock.seconds())
        header = request.getHeader(b"last-event-id")
        eventId = header.decode("utf-8", "replace") if header else args.get("last_event_id")
        after = stale = None
        if eventId:
            try:
                after = parseEventId(eventId, self._broker.start)
            except ValueError as e:
                raise BadRequest(str(e)) from None
            stale = eventId if after is None else None
        return _Asked(filters, format, int(tail), follow, after, stale, window)

    def _refuse(
        self, request: Request, code: int, reason: str, cause: str = "bad request"
    ) -> bytes:
        peer = describePeer(request.getClientAddress())
        self._refusals.refuse("subscriber", cause, f"{peer}: {reason[:200]}")
        return reply(request, code, reason)

    def _overLimit(self, asked: _Asked) -> Optional[str]:
        """
        Why a new subscription would take the server past one of its
        limits, if it would.
        """
        settings = self._settings
        if self._open >= settings.maxSubscribers:
            return f"too many subscribers ({settings.maxSubscribers}): try again later"
        pattern = asked.filters.log
        if (
            pattern is not None
            and pattern.text not in self._logFilters
            and len(self._logFilters) >= settings.maxLogFilters
        ):
            return (
                f"too many distinct log= patterns ({settings.maxLogFilters}): "
                "use one that others use, or try again later"
            )
        return None

    def _opened(self, stream: Stream, request: Request) -> None:
        self._open += 1
        # The grant the gate found is in the filters already.
        grant = stream.filters.access
        token = presented(request) if grant is not None else None
        if token is not None:
            assert isinstance(grant, Grant)
            self._granted[stream] = (token, grant)
        if stream.filters.log is not None:
            text = stream.filters.log.text
            self._logFilters[text] = self._logFilters.get(text, 0) + 1

    def _closed(self, stream: Stream) -> None:
        """
        A stream's response is over, live or not: let go of everything
        that refers to it.
        """
        live = self._live.pop(stream, None)
        if live is not None:
            live.close()
        self._open -= 1
        self._granted.pop(stream, None)
        stream.release()
        self._quiet.pop(stream, None)
        if not self._quiet and self._sweeper.running:
            self._sweeper.stop()
        if stream.filters.log is not None:
            text = stream.filters.log.text
            self._logFilters[text] -= 1
            if not self._logFilters[text]:
                del self._logFilters[text]

    def _streamHeaders(self, request: Request, format: IFormat) -> None:
        request.setHeader(b"content-type", format.contentType)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")

    def render_HEAD(self, request: Request) -> bytes:
        try:
            asked = self._parse(request)
        except BadRequest as e:
            return self._refuse(request, 400, str(e))
        self._streamHeaders(request, asked.format)
        return b""

    def render_GET(self, request: Request) -> bytes | int:
        try:
            asked = self._parse(request)
        except BadRequest as e:
            return self._refuse(request, 400, str(e))
        overLimit = self._overLimit(asked)
        if overLimit is not None:
            return self._refuse(request, 503, overLimit, overLimit.partition(" (")[0])
        if self._replayer.reading >= self._settings.maxQueries and self._deep(asked):
            reason = f"too many searches at once ({self._settings.maxQueries}): try again later"
            return self._refuse(request, 503, reason, "too many searches")
        stream = self._startStream(request, asked)
        self._replayer.replay(
            request,
            stream,
            asked.format,
            asked.filters,
            asked.tail,
            asked.after,
            asked.window,
            asked.stale,
            lambda: self._follow(request, stream, asked),
        )
        return NOT_DONE_YET

    def _deep(self, asked: _Asked) -> bool:
        """
        Whether a subscription may read history from disk: it asks for
        more than live records.
        """
        return bool(asked.tail or asked.after is not None or asked.window is not None)

    def _follow(self, request: Request, stream: Stream, asked: _Asked) -> None:
        """
        The replay is sent: make the stream live, or end it.
        """
        if asked.follow:
            self._live[stream] = self._broker.subscribe(stream)
            if asked.window is not None and asked.window.until is not None:
                self._endAt(request, stream, asked.window.until)
        # After subscribing: a request already finished calls this at once.
        request.notifyFinish().addBoth(lambda result: self._closed(stream))
        if not asked.follow:
            stream.finishWhenSent()
            return
        if asked.format.keepAlive is not None:
            self._quiet[stream] = 0
            if not self._sweeper.running:
                self._sweeper.start(KEEP_ALIVE / _SWEEPS, now=False)
        self._logLife(request, stream)

    def _endAt(self, request: Request, stream: Stream, until: str) -> None:
        """
        End C{stream} once the clock passes C{until} (an output timestamp
        in the future): its range is over.
        """
        seconds = (
            datetime.fromisoformat(until + "+00:00").timestamp() + 0.001 - self._clock.seconds()
        )

        def end() -> None:
            live = self._live.pop(stream, None)
            if live is not None:
                live.close()
                stream.finishWhenSent()

        call = self._clock.callLater(max(seconds, 0), end)

        def gone(result: object) -> None:
            if call.active():
                call.cancel()

        request.notifyFinish().addBoth(gone)

    def _logLife(self, request: Request, stream: Stream) -> None:
        """
        Log a live stream's start, and its end when it comes.
        """
        peer = describePeer(request.getClientAddress())
        query = hideToken(request.uri).partition(b"?")[2].decode("utf-8", "replace")
        self.log.info(
            "Subscriber {peer} subscribed to {query!r} ({count} subscribers)",
            peer=peer,
            query=query[:200],
            count=self._broker.subscriberCount(),
        )

        def wentAway(result: object) -> None:
            self.log.info(
                "Subscriber {peer} went away, {dropped} lines dropped ({count} subscribers)",
                peer=peer,
                dropped=stream.droppedTotal,
                count=self._broker.subscriberCount(),
            )

        request.notifyFinish().addBoth(wentAway)

    def _startStream(self, request: Request, asked: _Asked) -> Stream:
        """
        Send the response's headers and make C{request} a stream: its
        connection tuned for it, reading ended.
        """
        self._streamHeaders(request, asked.format)
        channel = request.channel
        tuneSocket(channel.transport)
        socket = widenWrites(channel.transport, self._pauseAt)
        # The request phase is over: a quiet stream is not an idle client.
        channel.setTimeout(None)
        settings = self._settings
        stream = Stream(
            request,
            asked.filters,
            asked.format,
            self._clock,
            settings.buffer,
            settings.bufferBytes,
            self._broker.stats,
            self._budget,
            socket,
        )
        self._opened(stream, request)
        startStreaming(request)
        request.registerProducer(stream, True)
        request.write(b"")
        stream.startStreaming()
        return stream

    def _tokensReloaded(self) -> None:
        """
        End the streams whose tokens were taken away or now allow something
        else: the client learns why, and may subscribe again under what its
        token allows now.
        """
        assert self._tokens is not None
        for stream, (token, grant) in list(self._granted.items()):
            if self._tokens.grant(token) != grant:
                del self._granted[stream]
                live = self._live.pop(stream, None)
                if live is not None:
                    live.close()
                stream.notify(
                    "the tokens were reloaded and this token no longer allows this "
                    "subscription as it was: subscribe again"
                )
                stream.finishWhenSent()

    def _sweep(self) -> None:
        """
        Send a keep-alive to each stream that has been silent for
        L{KEEP_ALIVE} seconds.
        """
        for stream, quiet in list(self._quiet.items()):
            if stream.spoke:
                stream.spoke = False
                quiet = 0
            else:
                quiet += 1
                if quiet >= _SWEEPS:
                    stream.keepAlive()
                    stream.spoke = False
                    quiet = 0
            self._quiet[stream] = quiet
