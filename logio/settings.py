# -*- test-case-name: tests.test_tap -*-
"""
The server's settings: one value built from the command line (see
L{logio.server.options}) and handed to every part that an option controls,
so no part keeps a default of its own.
"""

from __future__ import annotations

from typing import Optional

from attrs import frozen

from logio.ports import PUBLISH_PORT, SUBSCRIBE_PORT

MiB = 1024 * 1024


@frozen
class Settings:
    """
    What the options of C{twistd logio} set; the defaults are the options'.

    @ivar maxLine: The longest text line (bytes) or seed JSON value
        (characters) taken whole, from any source; longer ones are cut.
    @ivar maxPublishers: Publisher connections at once.
    @ivar topicTimeout: Seconds a publisher has to send its topic.
    @ivar buffer: Output lines queued per slow subscriber.
    @ivar bufferBytes: Bytes held per slow subscriber: its queue and its
        socket's buffer together.
    @ivar maxSubscribers: Subscriptions at once.
    @ivar maxLogFilters: Distinct C{log=} patterns at once.
    @ivar maxQueries: Subscriptions reading history from the store's disk
        at once.
    @ivar maxQueuedBytes: Bytes held for all subscribers together.
    @ivar maxIngestBytes: Bytes the bodies of all HTTP requests in flight
        may hold together.
    @ivar history: Records kept in memory for replay (0: none).
    @ivar historyBytes: Bytes kept in memory for replay.
    @ivar serverNames: Host names a server without C{--auth} answers to,
        besides IP addresses and C{localhost}.
    @ivar publish: The publisher port's endpoints.
    @ivar subscribe: The subscriber port's endpoints.
    @ivar syslogUDP: The C{(host, port)} addresses taking syslog over UDP.
    @ivar auth: The tokens file, or L{None} for a server without tokens.
    @ivar public: Whether a server without tokens answers peers beyond this
        machine too (else it is in protected mode: see L{protected}).
    @ivar store: The folder of the durable store, or L{None} for history in
        memory only.
    @ivar retainBytes: The most bytes the store's records take on disk.
    @ivar retainAge: Seconds the store keeps a record.
    @ivar cluster: The Redis URL of the cluster this node is part of, or
        L{None} for a server alone.
    @ivar clusterCA: With a C{rediss://} cluster: the CA certificates
        (PEM) its server's certificate is checked against, instead of the
        system's.
    @ivar clusterBufferBytes: The most bytes a node has sent to Redis that
        have not come back from its stream; beyond, it goes on alone.
    """

    maxLine: int = 65536
    maxPublishers: int = 10000
    topicTimeout: float = 10
    buffer: int = 10000
    bufferBytes: int = 4 * MiB
    maxSubscribers: int = 20000
    maxLogFilters: int = 100
    maxQueries: int = 8
    maxQueuedBytes: int = 256 * MiB
    maxIngestBytes: int = 64 * MiB
    history: int = 10000
    historyBytes: int = 16 * MiB
    serverNames: tuple[str, ...] = ()
    publish: tuple[str, ...] = (f"tcp:{PUBLISH_PORT}",)
    subscribe: tuple[str, ...] = (f"tcp:{SUBSCRIBE_PORT}",)
    syslogUDP: tuple[tuple[str, int], ...] = ()
    auth: Optional[str] = None
    public: bool = False
    store: Optional[str] = None
    retainBytes: int = 1024 * MiB
    retainAge: float = 7 * 86400.0
    cluster: Optional[str] = None
    clusterCA: Optional[str] = None
    clusterBufferBytes: int = 64 * MiB

    @property
    def protected(self) -> bool:
        """
        Whether the server answers this machine's peers only: it has no
        tokens, and was not told C{--public}.
        """
        return self.auth is None and not self.public
