# -*- test-case-name: tests.test_web -*-
"""
The subscriber port's site: one table of routes says, for each path, what
serves it, who may use it, with which methods, and how big its body may
be.  Every path not in the table subscribes, as the original had on any
path.  A request goes through the gate, then its route's checks, then to
its resource; a wrong method gets one 405 from here.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union
from urllib.parse import parse_qs

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Request

from logio.auth import Tokens
from logio.http import Discard, Refused, Sink, reply
from logio.interfaces import IBroker, IHTTPIngest
from logio.net import describePeer
from logio.refusals import Refusals
from logio.settings import Settings
from logio.web.channel import MAX_BODY, BodyBudget, SubscriberRequest, SubscriberSite
from logio.web.gate import OPEN, PUBLISH, SUBSCRIBE, Gate
from logio.web.status import HealthResource, MetricsResource, TopicsResource
from logio.web.subscribe import SubscribeResource
from logio.web.viewer import ViewerResource

#: The largest OTLP request body taken, in bytes (it is decoded whole).
MAX_OTLP_BODY = 16 * 1024 * 1024

#: What a route's body may be: at most so many bytes (in memory), or a
#: sink it streams into as it arrives.
Body = Union[int, Callable[[Request], Sink]]

_READ = (b"GET", b"HEAD")
_POST = (b"POST",)
#: What may follow a report's path: nothing, or a slash.
_ONLY = (b"",)


@frozen
class Route:
    """
    One path of the subscriber port.

    @ivar segment: The path's first segment.
    @ivar resource: What serves it.
    @ivar role: Who may use it: L{OPEN}, L{SUBSCRIBE} or L{PUBLISH} (see
        L{logio.web.gate}).
    @ivar methods: The methods it answers; others get a 405.
    @ivar action: What it is for, in the 405's words.
    @ivar rest: What may follow the first segment, joined by slashes
        (L{None}: anything); anything else is a 404.
    @ivar body: How big a body it takes, or where the body goes.
    """

    segment: bytes
    resource: Resource
    role: str
    methods: tuple[bytes, ...]
    action: str
    rest: Optional[tuple[bytes, ...]] = None
    body: Body = MAX_BODY

    def serves(self, rest: list[bytes]) -> bool:
        """
        Whether the route serves a path whose segments after the first are
        C{rest}.
        """
        return self.rest is None or b"/".join(rest) in self.rest


class Routes:
    """
    The table of routes: a route per first path segment, and the
    subscription for every other path.

    @ivar gate: Who may go on, by route.
    """

    def __init__(self, routes: Sequence[Route], default: Route, gate: Gate) -> None:
        self._routes = {route.segment: route for route in routes}
        self._default = default
        self.gate = gate

    def find(self, path: bytes) -> tuple[Route, list[bytes]]:
        """
        The route of C{path}, and the segments after its first.
        """
        segment, *rest = path[1:].split(b"/")
        route = self._routes.get(segment)
        if route is None:
            return self._default, [segment, *rest]
        return route, rest

    def bodyFor(
        self, request: SubscriberRequest, method: bytes, target: bytes
    ) -> tuple[Optional[Sink], Optional[int]]:
        """
        Where the body of C{request} goes and how big it may be, decided
        before it arrives (see L{logio.web.channel.Bodies}): a request for
        a route that takes more than L{MAX_BODY} is let in, or refused, by
        the gate now.
        """
        path, _, query = target.partition(b"?")
        route, rest = self.find(path)
        if route.body == MAX_BODY or method not in route.methods or not route.serves(rest):
            return None, MAX_BODY
        # What Request.requestReceived will set again, for the gate's use.
        request.args = parse_qs(query, keep_blank_values=True)
        refusal = self.gate.admit(request, route.role)
        if refusal is not None:
            refusal.early(request)
            return Discard(), None
        if isinstance(route.body, int):
            return None, route.body
        try:
            return route.body(request), None
        except Refused as e:
            peer = describePeer(request.getClientAddress())
            self.gate.refusals.refuse(e.side, e.cause, f"{peer}: {e}")
            request.channel.answer(e.code, str(e))
            return Discard(), None


class RootResource(Resource):
    """
    The subscriber port's root: every request is routed here, by the
    table of L{Routes}.
    """

    isLeaf = True

    def __init__(self, routes: Routes) -> None:
        super().__init__()
        self._routes = routes

    def render(self, request: Request) -> bytes | int:
        assert request.path is not None
        route, rest = self._routes.find(request.path)
        refusal = self._routes.gate.admit(request, route.role)
        if refusal is not None:
            return refusal.render(request)
        if not route.serves(rest):
            return reply(request, 404, "not found")
        if request.method not in route.methods:
            allowed = b", ".join(route.methods)
            request.setHeader(b"allow", allowed)
            message = f"method not allowed: {route.action} with {route.methods[0].decode()}"
            peer = describePeer(request.getClientAddress())
            self._routes.gate.refusals.refuse(
                "subscriber", "method not allowed", f"{peer}: {message}"
            )
            return reply(request, 405, message)
        if route.segment:
            # As if Twisted had walked the path to the route's resource.
            request.prepath = [route.segment]
            request.postpath = rest
        return route.resource.render(request)


def makeSite(
    broker: IBroker,
    clock: IReactorTime,
    settings: Settings,
    refusals: Refusals,
    ingest: IHTTPIngest,
    tokens: Optional[Tokens] = None,
) -> SubscriberSite:
    """
    The subscriber port's site: the table of its routes, the gate, and
    the resources behind them.
    """
    subscribe = Route(
        b"",
        SubscribeResource(broker, clock, settings, refusals, tokens),
        SUBSCRIBE,
        _READ,
        "subscribe",
    )
    notFound = Resource()
    routes = Routes(
        [
            Route(b"healthz", HealthResource(broker), OPEN, _READ, "ask", _ONLY),
            Route(b"metrics", MetricsResource(broker), SUBSCRIBE, _READ, "read them", _ONLY),
            Route(b"topics", TopicsResource(broker), SUBSCRIBE, _READ, "read them", _ONLY),
            Route(b"ui", ViewerResource(), OPEN, _READ, "view it"),
            Route(b"favicon.ico", notFound, OPEN, _READ, "ask", ()),
            Route(b"publish", ingest.publish, PUBLISH, _POST, "publish", None, ingest.publishBody),
            Route(b"v1", ingest.otlp, PUBLISH, _POST, "export logs", (b"logs",), MAX_OTLP_BODY),
        ],
        subscribe,
        Gate(refusals, tokens, settings.serverNames),
    )
    budget = BodyBudget(settings.maxIngestBytes)
    return SubscriberSite(
        RootResource(routes), routes, refusals, budget, settings.protected, reactor=clock
    )
