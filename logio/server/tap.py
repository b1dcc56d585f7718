# -*- test-case-name: tests.test_tap -*-
"""
C{twistd logio}: the service tree, built from the L{Settings} the options
make.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

from twisted.application.service import MultiService
from twisted.logger import Logger

import logio
from logio.auth import Tokens, TokensError
from logio.broker import Broker
from logio.history import History
from logio.ingest.http import Ingest
from logio.ingest.sniff import PublisherFactory
from logio.ingest.syslognet import SyslogDatagramProtocol
from logio.interfaces import IHistory
from logio.refusals import Refusals
from logio.server.options import Options
from logio.server.services import (
    AuthService,
    ListeningService,
    PublishersService,
    StartupError,
    SyslogUDPService,
    raiseFileLimit,
    returnLargeBuffers,
)
from logio.settings import Settings
from logio.store import Store
from logio.storedb import StoreError
from logio.web.site import makeSite

__all__ = ["Options", "makeService"]

_log = Logger()


def _history(settings: Settings, reactor: Any, top: MultiService) -> IHistory:
    """
    Where records are numbered and kept for replay: the one place that
    chooses.  In memory, within C{--history} and C{--history-bytes}, its
    event ids starting with this run's start instant; or, with C{--store},
    on disk too, its ids the store's.
    """
    epoch = int(reactor.seconds() * 1000)
    if settings.cluster is not None:
        from logio.cluster.history import SharedHistory

        return SharedHistory(settings.history, settings.historyBytes, epoch=epoch)
    ring = History(settings.history, settings.historyBytes, epoch=epoch)
    if settings.store is None:
        return ring
    try:
        store = Store(settings.store, ring, reactor, settings.retainBytes, settings.retainAge)
    except StoreError as e:
        raise StartupError(f"logio: {e}") from None
    # Started before the broker, stopped after it: what the publishers sent
    # last is written before the server exits.
    store.setServiceParent(top)
    return store


def _cluster(settings: Settings, broker: Broker, reactor: Any, top: MultiService) -> None:
    """
    Make this server a node of the cluster of C{--cluster}: a relay takes
    what its publishers send to every node.  Nodes on one machine share
    their listening ports (each listener is opened with C{SO_REUSEPORT}).
    """
    assert settings.cluster is not None
    try:
        from logio.cluster.address import parseRedisURL
        from logio.cluster.relay import Relay

        address = parseRedisURL(settings.cluster, settings.clusterCA)
        relay = Relay(
            address,
            broker,
            broker.history,  # type: ignore[arg-type]
            reactor,
            settings.clusterBufferBytes,
        )
    except ImportError as e:
        raise StartupError(f"logio: --cluster: {e}") from None
    except ValueError as e:
        raise StartupError(f"logio: --cluster: {e}") from None
    broker.relay = relay
    broker.history.relay = relay  # type: ignore[attr-defined]
    relay.setServiceParent(top)


def _tokens(settings: Settings, top: MultiService, reactor: Any) -> Optional[Tokens]:
    """
    The tokens of C{--auth}, reloaded on SIGHUP by a service of C{top}; or
    L{None} without C{--auth}.
    """
    if settings.auth is None:
        return None
    try:
        tokens = Tokens(settings.auth)
    except TokensError as e:
        raise StartupError(f"logio: --auth: {e}") from None
    AuthService(tokens, reactor).setServiceParent(top)
    _log.info("Letting in only the {count} tokens of {path}", count=len(tokens), path=tokens.path)
    return tokens


def runningReactor() -> Any:
    """
    The reactor this process runs.  If none is installed yet (C{twistd}
    without C{--reactor}) and epoll exists, that is
    L{logio.server.loop.LeanEPollReactor}, installed now; otherwise the one
    installed, or Twisted's default.
    """
    if "twisted.internet.reactor" not in sys.modules:
        try:
            from logio.server.loop import LeanEPollReactor
        except ImportError:
            pass
        else:
            from twisted.internet.main import installReactor

            installReactor(LeanEPollReactor())
    from twisted.internet import reactor

    return reactor


def makeService(options: Options, reactor: Optional[Any] = None) -> MultiService:
    """
    Build the service tree: the broker, then one listening service per
    publisher and subscriber endpoint.
    """
    if reactor is None:
        reactor = runningReactor()
    raiseFileLimit()
    returnLargeBuffers()
    _log.info(
        "logio {version} from {path}",
        version=logio.version(),
        path=os.path.dirname(os.path.abspath(logio.__file__)),
    )
    settings = options.settings()
    top = MultiService()
    tokens = _tokens(settings, top, reactor)
    guarded = tokens is not None
    protected = settings.protected
    broker = Broker(settings, reactor, history=_history(settings, reactor, top))
    broker.setServiceParent(top)
    if settings.cluster is not None:
        _cluster(settings, broker, reactor, top)
    shared = settings.cluster is not None
    # One log of refusals for both ports, so each cause is rate-limited once.
    refusals = Refusals(broker.stats, reactor)
    publishers = PublisherFactory(broker, reactor, settings, refusals, tokens)
    if broker.relay is not None:
        # A relay that falls behind holds the publishers back.
        broker.relay.hold = publishers.holdReading
    # Stopped before the broker (a MultiService stops its children in
    # reverse order), so publishers stop being read before subscribers drain.
    PublishersService(publishers).setServiceParent(top)
    for host, port in settings.syslogUDP:
        protocol = SyslogDatagramProtocol(broker, reactor, settings, refusals, tokens)
        SyslogUDPService(host, port, protocol, reactor, guarded, protected).setServiceParent(top)
    for description in settings.publish:
        service = ListeningService(
            "publishers", description, publishers, reactor, guarded, protected, reusePort=shared
        )
        service.setServiceParent(top)
    ingest = Ingest(broker, reactor, settings)
    site = makeSite(broker, reactor, settings, refusals, ingest, tokens)
    for description in settings.subscribe:
        ListeningService(
            "subscribers", description, site, reactor, guarded, protected, reusePort=shared
        ).setServiceParent(top)
    return top
