"""The ``scaling`` scenario: how deliveries/s grow (or fall) with the number of subscribers
and with the number of publishers, for logio, redis-server and nats-server alike.

- ``scaling-subs-N-<server>``: 1 publisher blasting to N subscribers of it, N = 1, 10,
  100, 1,000.
- ``scaling-pubs-N-<server>``: N publishers blasting to 1 subscriber of them all.

logio's publishers speak the seed JSON protocol (the Go client's bytes), redis-server's
pipeline ``PUBLISH`` and nats-server's ``PUB``, all of the same lines; every subscriber
counts what it gets. Each point runs on a fresh server for the settings' scaling window
(short with ``--quick``). The chart draws the points as curves on log axes.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from .amplified import lines_dropped
from .harness import Harness, split, subscriber
from .procs import Server
from .workers import PubSpec

COUNTS = (1, 10, 100, 1000)
SERVERS = ("logio", "redis", "nats")
PROTOCOLS = {"logio": "seed", "redis": "redis", "nats": "nats"}
AXES = {"subs": "subscribers", "pubs": "publishers"}
"""A scaling case's axis, by the word in its name."""


def point_name(axis: str, count: int, kind: str) -> str:
    """The case of one point: ``axis`` ``subs`` or ``pubs``, ``count`` of them."""
    return f"scaling-{axis}-{count}-{kind}"


def points(results: dict[str, dict[str, Any]], axis: str, kind: str) -> list[tuple[int, float]]:
    """The measured points of one curve: (count, deliveries/s), none delivered
    included."""
    out = []
    for count in COUNTS:
        rate = results.get(point_name(axis, count, kind), {}).get("deliveries_per_s")
        if rate is not None:
            out.append((count, rate))
    return out


class ScalingLoads(Harness):
    """The scaling scenario's cases."""

    def scenario_scaling(self) -> None:
        """Every point of both axes, for each server in turn."""
        for axis in AXES:
            for count in COUNTS:
                for kind in SERVERS:
                    load = partial(self.point, axis=axis, count=count, kind=kind)
                    self.case(point_name(axis, count, kind), kind, load)

    @staticmethod
    def scaling_case_count() -> int:
        """How many cases the scaling scenario runs."""
        return len(AXES) * len(COUNTS) * len(SERVERS)

    def point(self, server: Server, axis: str, count: int, kind: str) -> dict[str, Any]:
        """One point: ``count`` subscribers of 1 publisher, or ``count`` publishers to 1
        subscriber, blasting for the scaling window; deliveries/s counted."""
        proto = PROTOCOLS[kind]
        publishers = count if axis == "pubs" else 1
        subscribers = count if axis == "subs" else 1
        pubs = [PubSpec(proto, "bench", pub=i, proc=f"p{i:03d}") for i in range(publishers)]
        subs = [subscriber(kind, "bench")] * subscribers
        out = self.load(
            server,
            split(pubs, 1 if publishers < 100 else 4),
            split(subs, 1 if subscribers <= 10 else (2 if subscribers <= 100 else 4)),
            cpu={"server": server.pid},
            timing=self.settings.scaling_window,
        )
        out.update({"axis": axis, "count": count, "protocol": proto})
        if kind == "logio":
            # What it dropped for its subscribers: a notice says so only before a next
            # line, which may never come.
            out["server_dropped"] = lines_dropped(server)
        return out
