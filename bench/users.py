"""The ``users`` scenario: the loads users have, each through logio and through nats-server
in the same run.

- ``users-1000x20`` and ``users-1000x100``: a fleet of 1,000 publisher connections
  (L{bench.fleet}), each sending 20 (or 100) lines a second, open loop, one line per
  write, to 10 parsing subscribers of all of them. logio's publishers speak the seed JSON
  protocol (the Go client's bytes: one record per write); nats-server's send one ``PUB``
  per write of the same line. Figures: latency p50/p99/p99.9 from each line's intended
  send time, every line checked, and the server's CPU % while they publish.
- ``users-1000-apps``: 1,000 publishers at 20 lines/s, each on an app of its own, and
  1,000 parsing subscribers, each to one app (logio ``app=^appNNN$``, NATS
  ``appNNN.>``): deliveries/s, latency and CPU %.
- ``users-size-N`` for lines of 50 B, 200 B, 1 KiB and 16 KiB (newline included): 4
  publishers blasting text-protocol lines (NATS: ``PUB`` of the same lines) to 1
  counting subscriber; lines/s and MiB/s of lines delivered.

Each logio case ``users-...`` has its nats-server twin ``nats-users-...``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from .fleet import publish_fleet
from .harness import Harness, Worker, split, subscriber
from .nats import subject_for
from .procs import Server
from .workers import PubSpec, SubSpec

FLEET = 1000
"""Publisher connections in a fleet."""
FLEET_WORKERS = 4
"""Worker processes that drive a fleet's connections."""
FLEET_RATES = (20.0, 100.0)
"""Lines a second each fleet publisher sends, one case each."""
FLEET_SUBSCRIBERS = 10
APPS = 1000
APPS_RATE = 20.0
LINE_SIZES = (50, 200, 1024, 16384)
"""Bytes per line, its newline included."""
KINDS = ("logio", "nats")


def twin(kind: str, name: str) -> str:
    """The case name of a load through ``kind`` (nats-server's cases are ``nats-...``)."""
    return name if kind == "logio" else f"{kind}-{name}"


def fleet_name(rate: float) -> str:
    """The case of the fleet publishing ``rate`` lines/s a connection."""
    return f"users-{FLEET}x{rate:g}"


APPS_CASE = f"users-{APPS}-apps"


def size_name(size: int) -> str:
    """The case of lines of ``size`` bytes."""
    return f"users-size-{size}"


def fleet_worker(port: int, group: list[PubSpec], total: int) -> Worker:
    """The worker of a group of a fleet of ``total`` publishers."""
    return Worker(publish_fleet, port, group, total)


class UserLoads(Harness):
    """The users scenario's cases."""

    def scenario_users(self) -> None:
        """The fleets, the 1,000 apps and the line sizes, through logio and nats-server."""
        for rate in FLEET_RATES:
            for kind in KINDS:
                load = partial(self.fleet_load, kind=kind, rate=rate)
                self.case(twin(kind, fleet_name(rate)), kind, load)
        for kind in KINDS:
            self.case(twin(kind, APPS_CASE), kind, partial(self.apps_load, kind=kind))
        for size in LINE_SIZES:
            for kind in KINDS:
                proto = "text" if kind == "logio" else "nats"
                pubs = [
                    PubSpec(proto, "bench", pub=i, proc=f"p{i}", width=size - 1) for i in range(4)
                ]
                name = twin(kind, size_name(size))
                self.blast_case(name, kind, pubs, [subscriber(kind, "bench")], 1)
                self.results[name]["line_bytes"] = size

    @staticmethod
    def users_case_count() -> int:
        """How many cases the users scenario runs."""
        return len(KINDS) * (len(FLEET_RATES) + 1 + len(LINE_SIZES))

    def fleet_load(self, server: Server, kind: str, rate: float) -> dict[str, Any]:
        """1,000 publishers at ``rate`` lines/s each -> 10 parsing subscribers."""
        proto = "seed" if kind == "logio" else "nats"
        pubs = [PubSpec(proto, "bench", pub=i, proc=f"p{i:03d}") for i in range(FLEET)]
        if kind == "logio":
            sub = SubSpec("http", "app=bench", parse=True)
        else:
            sub = SubSpec("nats", subject_for("bench"), parse=True)
        return self.paced_fleet(server, pubs, [sub] * FLEET_SUBSCRIBERS, rate, proto)

    def apps_load(self, server: Server, kind: str) -> dict[str, Any]:
        """1,000 publishers on 1,000 apps -> 1,000 subscribers, one app each."""
        proto = "seed" if kind == "logio" else "nats"
        apps = [f"app{i:03d}" for i in range(APPS)]
        pubs = [PubSpec(proto, app, pub=i) for i, app in enumerate(apps)]
        # Each gets 20 lines a second: parsing them once a second is plenty (arrival
        # times are kept per read either way, and each connection parses in a phase of
        # its own).
        if kind == "logio":
            subs = [
                SubSpec("http", f"app=^{app}$", parse=True, pubs=(i,), flush=1.0)
                for i, app in enumerate(apps)
            ]
        else:
            subs = [
                SubSpec("nats", subject_for(app), parse=True, pubs=(i,), flush=1.0)
                for i, app in enumerate(apps)
            ]
        return self.paced_fleet(server, pubs, subs, APPS_RATE, proto)

    def paced_fleet(
        self, server: Server, pubs: list[PubSpec], subs: list[SubSpec], rate: float, proto: str
    ) -> dict[str, Any]:
        """Run a fleet of publishers at ``rate`` lines/s each for the settings' time;
        the server's CPU % while they publish, every subscriber's lines checked."""
        seconds = self.settings.users_seconds
        out = self.load(
            server,
            split(pubs, FLEET_WORKERS),
            split(subs, 2),
            rate=rate,
            seconds=seconds,
            drain=15,
            cpu={"server": server.pid},
            publisher=partial(fleet_worker, total=len(pubs)),
        )
        out.update(
            {
                "rate": rate,
                "publish_seconds": seconds,
                "protocol": proto,
                "deliveries_per_s_paced": out["delivered"] / seconds,
                "lines_per_s": out["published"] / seconds,
            }
        )
        return out
