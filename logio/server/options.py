# -*- test-case-name: tests.test_tap -*-
"""
The command-line options of C{twistd logio}, and the L{Settings} they make.
"""

from __future__ import annotations

from typing import Callable

from twisted.python import usage

from logio.settings import Settings
from logio.timerange import parseSpan

#: The defaults of every option: the settings' own.
DEFAULTS = Settings()


def _atLeast(minimum: int, doc: str) -> Callable[[str], int]:
    """
    An option type: a whole number of at least C{minimum}.
    """

    def coerce(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise ValueError(f"{value} is less than {minimum}")
        return number

    coerce.coerceDoc = doc  # type: ignore[attr-defined]
    return coerce


_positive = _atLeast(1, "Must be a positive integer.")


def _span(value: str) -> float:
    return parseSpan(value)


_span.coerceDoc = "A span: 90s, 15m, 2h, 7d or 1w."  # type: ignore[attr-defined]
_count = _atLeast(0, "Must be a whole number (0 turns it off).")


class Options(usage.Options):
    """
    Options for C{twistd logio}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run a logio server: publishers send log lines over TCP (seed JSON or "
        "plain text lines), subscribers stream the lines matching their "
        "regular expressions over HTTP: "
        "curl -N 'http://localhost:7702/?app=myapp&proc=web|worker'. "
        "ENDPOINT is any Twisted server endpoint string, e.g. "
        "tcp:7701:interface=127.0.0.1, unix:/run/logio.sock, "
        "ssl:7443:privateKey=key.pem:certKey=cert.pem. "
        "Without --auth, anyone who can reach a port publishes as any app "
        "and reads every app: see the README's security section."
    )
    optFlags = [
        [
            "public",
            None,
            "Without --auth, answer peers beyond this machine too (by default such a "
            "server answers this machine only).",
        ],
    ]
    optParameters = [
        [
            "max-line",
            None,
            DEFAULTS.maxLine,
            "Longest text line (bytes) or seed JSON record (characters); longer ones are cut and marked.",
            _positive,
        ],
        [
            "max-publishers",
            None,
            DEFAULTS.maxPublishers,
            "Publisher connections at once; more get an error line and are closed.",
            _positive,
        ],
        [
            "topic-timeout",
            None,
            DEFAULTS.topicTimeout,
            "Seconds a publisher has to send its topic before it gets an error line and is closed.",
            _positive,
        ],
        [
            "buffer",
            None,
            DEFAULTS.buffer,
            "Lines queued per slow subscriber before the oldest are dropped.",
            _positive,
        ],
        [
            "buffer-bytes",
            None,
            DEFAULTS.bufferBytes,
            "Bytes held per slow subscriber (its queue and socket buffer) before the oldest lines are dropped.",
            _positive,
        ],
        [
            "max-subscribers",
            None,
            DEFAULTS.maxSubscribers,
            "Subscribers at once; more get HTTP 503.",
            _positive,
        ],
        [
            "max-log-filters",
            None,
            DEFAULTS.maxLogFilters,
            "Distinct log= patterns across all subscribers; a new one beyond gets HTTP 503.",
            _positive,
        ],
        [
            "max-queries",
            None,
            DEFAULTS.maxQueries,
            "With --store: subscriptions reading history from disk at once; more get HTTP 503.",
            _positive,
        ],
        [
            "max-queued-bytes",
            None,
            DEFAULTS.maxQueuedBytes,
            "Bytes held for all subscribers together (queues, and stalled ones' sockets); past it the biggest queues drop their oldest lines, then the stalled subscribers holding the most are disconnected.",
            _positive,
        ],
        [
            "max-ingest-bytes",
            None,
            DEFAULTS.maxIngestBytes,
            "Bytes the bodies of all HTTP requests in flight may hold together (an OTLP body is read whole; a POST /publish counts --max-line); beyond it, HTTP 503.",
            _positive,
        ],
        [
            "history",
            None,
            DEFAULTS.history,
            "Records kept in memory for replay (?tail=N, SSE resume); the oldest go first.",
            _count,
        ],
        [
            "history-bytes",
            None,
            DEFAULTS.historyBytes,
            "Bytes kept in memory for replay: the input records came in, plus 64 per record.",
            _positive,
        ],
        [
            "cluster-buffer-bytes",
            None,
            DEFAULTS.clusterBufferBytes,
            "With --cluster: the most bytes sent to Redis and not back yet; beyond, the node "
            "goes on alone until Redis keeps up.",
            _positive,
        ],
        [
            "retain-bytes",
            None,
            DEFAULTS.retainBytes,
            "With --store: the most bytes its records may take on disk; the oldest go first.",
            _positive,
        ],
        [
            "retain-age",
            None,
            "7d",
            "With --store: how long records are kept; older ones go.",
            _span,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["publish"] = []
        self["subscribe"] = []
        self["server-name"] = []
        self["syslog-udp"] = []
        self["auth"] = None
        self["store"] = None
        self["cluster"] = None
        self["cluster-ca"] = None

    def opt_cluster(self, url: str) -> None:
        """
        Be one node of a cluster that shares topics, history and ids through
        the Redis (or Valkey) at URL: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB],
        or rediss:// for TLS. Needs pip install 'logio[cluster]'.
        """
        self["cluster"] = url

    def opt_cluster_ca(self, path: str) -> None:
        """
        With a rediss:// --cluster: check the Redis server's certificate
        against the CA certificates in FILE (PEM) instead of the system's.
        """
        self["cluster-ca"] = path

    def opt_store(self, directory: str) -> None:
        """
        Keep every record on disk in DIR (created if needed), so a restart keeps
        history and event ids; without it, history is in memory only.
        """
        self["store"] = directory

    def opt_auth(self, path: str) -> None:
        """
        Let in only the publishers and subscribers with a token of FILE:
        lines of TOKEN pub|sub|both APP_REGEX (reloaded on SIGHUP).
        """
        self["auth"] = path

    def opt_syslog_udp(self, address: str) -> None:
        """
        Also take syslog messages over UDP on PORT or HOST:PORT (repeatable;
        off by default).
        """
        host, _, port = address.rpartition(":")
        if not (port.isdigit() and 0 <= int(port) <= 65535):
            raise usage.UsageError(f"--syslog-udp takes PORT or HOST:PORT, not {address!r}")
        self["syslog-udp"].append((host.strip("[]"), int(port)))

    def opt_server_name(self, name: str) -> None:
        """
        Without --auth, answer HTTP requests for the host NAME too, besides
        IP addresses and localhost (repeatable).
        """
        self["server-name"].append(name)

    def opt_publish(self, description: str) -> None:
        """
        Listen for publishers on ENDPOINT (repeatable; default tcp:7701).
        """
        self["publish"].append(description)

    def opt_subscribe(self, description: str) -> None:
        """
        Listen for HTTP subscribers on ENDPOINT (repeatable; default tcp:7702).
        """
        self["subscribe"].append(description)

    def postOptions(self) -> None:
        if self["cluster"] is not None and self["store"] is not None:
            raise usage.UsageError(
                "--store and --cluster do not go together: a cluster's history is its Redis "
                "stream, shared by every node"
            )
        if self["cluster-ca"] is not None and self["cluster"] is None:
            raise usage.UsageError("--cluster-ca goes with --cluster")
        if not self["publish"]:
            self["publish"] = list(DEFAULTS.publish)
        if not self["subscribe"]:
            self["subscribe"] = list(DEFAULTS.subscribe)

    def settings(self) -> Settings:
        """
        The settings these options make.
        """
        return Settings(
            maxLine=self["max-line"],
            maxPublishers=self["max-publishers"],
            topicTimeout=self["topic-timeout"],
            buffer=self["buffer"],
            bufferBytes=self["buffer-bytes"],
            maxSubscribers=self["max-subscribers"],
            maxLogFilters=self["max-log-filters"],
            maxQueuedBytes=self["max-queued-bytes"],
            maxQueries=self["max-queries"],
            maxIngestBytes=self["max-ingest-bytes"],
            history=self["history"],
            historyBytes=self["history-bytes"],
            serverNames=tuple(self["server-name"]),
            publish=tuple(self["publish"]),
            subscribe=tuple(self["subscribe"]),
            syslogUDP=tuple(self["syslog-udp"]),
            auth=self["auth"],
            public=bool(self["public"]),
            store=self["store"],
            cluster=self["cluster"],
            clusterCA=self["cluster-ca"],
            clusterBufferBytes=self["cluster-buffer-bytes"],
            retainBytes=self["retain-bytes"],
            # The default is given as a span too, and options do not coerce it.
            retainAge=_span(age) if isinstance(age := self["retain-age"], str) else age,
        )


# Twisted's help shows an option method's docstring as it is, indentation
# and all: make each one line, so the help wraps it evenly.
for _name, _method in vars(Options).items():
    if _name.startswith("opt_") and _method.__doc__:
        _method.__doc__ = " ".join(_method.__doc__.split())
