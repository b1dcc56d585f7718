"""
Tests for C{--cluster} and C{--cluster-ca}: how L{logio.server.options}
checks them and how L{logio.server.tap.makeService} refuses what cannot
start.
"""

from __future__ import annotations

import sys

from twisted.application.service import IService
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from logio.broker import Broker
from logio.server.options import Options
from logio.server.services import ListeningService, StartupError
from logio.server.tap import makeService

#: A URL whose server nobody connects to: makeService only builds services.
URL = "redis://127.0.0.1:6379/0"


def parsed(*arguments: str) -> Options:
    """
    Options parsed from C{arguments}.
    """
    options = Options()
    options.parseOptions(list(arguments))
    return options


class ClusterOptionsTests(SynchronousTestCase):
    """
    What the command line accepts with C{--cluster}.
    """

    def test_help(self) -> None:
        """
        The help lists C{--cluster} and C{--cluster-ca}, with what each takes.
        """
        # The help wraps its lines: compare with single spaces.
        usage = " ".join(str(Options()).split())
        self.assertIn("--cluster=", usage)
        self.assertIn("--cluster-ca=", usage)
        self.assertIn("redis://", usage)
        self.assertIn("pip install 'logio[cluster]'", usage)

    def test_parsed(self) -> None:
        """
        Both options reach the settings; without them there is no cluster.
        """
        settings = parsed("--cluster", "rediss://h/1", "--cluster-ca", "ca.pem").settings()
        self.assertEqual((settings.cluster, settings.clusterCA), ("rediss://h/1", "ca.pem"))
        settings = parsed().settings()
        self.assertEqual((settings.cluster, settings.clusterCA), (None, None))

    def test_storeWithCluster(self) -> None:
        """
        C{--store} and C{--cluster} together are refused, either way round,
        with a reason.
        """
        for arguments in (
            ["--store", "/tmp/s", "--cluster", URL],
            ["--cluster", URL, "--store", "/tmp/s"],
        ):
            with self.assertRaises(UsageError) as caught:
                Options().parseOptions(arguments)
            message = str(caught.exception)
            self.assertIn("--store and --cluster do not go together", message)
            self.assertIn("Redis stream", message)

    def test_caWithoutCluster(self) -> None:
        """
        C{--cluster-ca} without C{--cluster} is refused.
        """
        with self.assertRaises(UsageError) as caught:
            Options().parseOptions(["--cluster-ca", "ca.pem"])
        self.assertIn("--cluster-ca goes with --cluster", str(caught.exception))


class ClusterServiceTests(SynchronousTestCase):
    """
    What L{makeService} builds with C{--cluster}, and what stops it.
    """

    def startupError(self, *arguments: str) -> str:
        """
        The message of the L{StartupError} that L{makeService} raises for
        C{arguments}.
        """
        options = parsed(*arguments)
        with self.assertRaises(StartupError) as caught:
            makeService(options, MemoryReactorClock())
        return str(caught.exception)

    def test_relayAndSharedListeners(self) -> None:
        """
        With C{--cluster}, the broker has a relay, a service of the tree,
        and every listener shares its port; without, neither.
        """
        from logio.cluster.relay import Relay

        listening = ["--publish", "tcp:0", "--subscribe", "tcp:0", "--subscribe", "tcp6:0"]
        top = makeService(parsed("--cluster", URL, *listening), MemoryReactorClock())
        children = list(IService(top))
        [broker] = [c for c in children if isinstance(c, Broker)]
        [relay] = [c for c in children if isinstance(c, Relay)]
        self.assertIs(broker.relay, relay)
        self.assertEqual(relay.address.describe(), URL)
        listeners = [c for c in children if isinstance(c, ListeningService)]
        self.assertEqual([c.reusePort for c in listeners], [True, True, True])
        top = makeService(parsed(*listening[:4]), MemoryReactorClock())
        children = list(IService(top))
        [broker] = [c for c in children if isinstance(c, Broker)]
        self.assertIsNone(broker.relay)
        self.assertEqual([c for c in children if isinstance(c, Relay)], [])
        listeners = [c for c in children if isinstance(c, ListeningService)]
        self.assertEqual([c.reusePort for c in listeners], [False, False])

    def test_badURL(self) -> None:
        """
        A URL that is not a Redis one stops the server with one line that
        names C{--cluster} and says what is wrong, never the password.
        """
        for url, reason in [
            ("http://x", "a Redis URL starts with redis:// or rediss://"),
            ("redis://host:notaport", "the port in the Redis URL is not a number"),
            ("redis://:s3cret@host:notaport/0", "the port in the Redis URL is not a number"),
            ("redis://u:s3cret@host/zero", "the path of a Redis URL is a database number"),
            ("redis://u:s3cret@/0", "the Redis URL names no host"),
            ("redis://u:s3cret@host/0?x=1", "a Redis URL has no ?query"),
            ("redis://u:s3cret@[::1/0", "not a valid [IPv6] address"),
            ("s3cret", "a Redis URL starts with redis:// or rediss://"),
        ]:
            message = self.startupError("--cluster", url)
            self.assertTrue(message.startswith("logio: --cluster: "), message)
            self.assertIn(reason, message)
            self.assertNotIn("s3cret", message)

    def test_badCA(self) -> None:
        """
        C{--cluster-ca} with a C{redis://} URL, or naming a file that cannot
        be read, stops the server with one line.
        """
        message = self.startupError("--cluster", URL, "--cluster-ca", "ca.pem")
        self.assertEqual(
            message, "logio: --cluster: a CA file applies only to rediss:// (TLS) URLs"
        )
        missing = self.mktemp()
        message = self.startupError(
            "--cluster", "rediss://:s3cret@localhost/0", "--cluster-ca", missing
        )
        self.assertTrue(message.startswith("logio: --cluster: "), message)
        self.assertIn(f"cannot read the Redis CA file {missing}", message)
        self.assertNotIn("s3cret", message)

    def test_hiredisMissing(self) -> None:
        """
        Without the C{hiredis} package, C{--cluster} stops the server with a
        line that says how to install it.
        """
        missing = object()
        previous = sys.modules.get("hiredis", missing)
        # None in sys.modules makes "import hiredis" raise ImportError.
        sys.modules["hiredis"] = None  # type: ignore[assignment]

        def restore() -> None:
            if previous is missing:
                del sys.modules["hiredis"]
            else:
                sys.modules["hiredis"] = previous  # type: ignore[assignment]

        self.addCleanup(restore)
        message = self.startupError("--cluster", URL)
        self.assertTrue(message.startswith("logio: --cluster: "), message)
        self.assertIn("pip install 'logio[cluster]'", message)

    def test_unixListener(self) -> None:
        """
        With C{--cluster}, a listener that cannot share its port (a UNIX
        socket, say) stops the server with the listener's own line.
        """
        message = self.startupError(
            "--cluster", URL, "--publish", "tcp:0", "--subscribe", "unix:/tmp/logio-s.sock"
        )
        self.assertEqual(
            message,
            "logio: cannot share 'unix:/tmp/logio-s.sock' for subscribers with other server "
            "processes: the cluster needs tcp, tcp6 or ssl listeners",
        )
        message = self.startupError("--cluster", URL, "--publish", "unix:/tmp/logio-p.sock")
        self.assertIn("cannot share 'unix:/tmp/logio-p.sock' for publishers", message)
