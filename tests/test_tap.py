"""
Tests for L{logio.server.tap}, the twistd plugin and the Dockerfile.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
from typing import Any

from twisted.application.service import IService
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from logio.broker import Broker
from logio.filters import Filters
from logio.server import services
from logio.server.options import Options
from logio.server.services import (
    BACKLOG,
    AuthService,
    ListeningService,
    PublishersService,
    SyslogUDPService,
    withBacklog,
)
from logio.server.tap import makeService
from tests.support.http import Client
from tests.support.processes import ROOT, environment, logio
from tests.support.server import twistd
from tests.support.tokens import tokensFile
from tests.support.waiting import TIMEOUT, waitFor


class PluginTests(SynchronousTestCase):
    """
    The plugin module itself.
    """

    def test_plugin(self) -> None:
        """
        C{twisted.plugins.logio_plugin} names the logio command and the tap module.
        """
        from twisted.plugins import logio_plugin

        self.assertEqual(logio_plugin.logio.tapname, "logio")
        self.assertEqual(logio_plugin.logio.module, "logio.server.tap")
        self.assertIs(logio_plugin.logio.options, Options)

    def test_twistdHelp(self) -> None:
        """
        C{twistd logio --help} documents every option, each text wrapped
        evenly: no run of spaces inside it.
        """
        out = subprocess.run(
            [twistd(), "logio", "--help"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=environment(),
        ).stdout
        for option in (
            "--publish=", "--subscribe=", "--max-line=", "--buffer=", "--buffer-bytes=",
            "--history=", "--history-bytes=", "--max-ingest-bytes=", "--auth=",
        ):  # fmt: skip
            self.assertIn(option, out)
        texts = [line.strip() for line in out.splitlines() if not line.strip().startswith("-")]
        self.assertEqual([text for text in texts if re.search(r"\S {2,}\S", text)], [])


class OptionsTests(SynchronousTestCase):
    """
    Command-line parsing.
    """

    def test_defaults(self) -> None:
        """
        Without options: tcp 7701 and 7702, 64 KiB lines, 10000-line and 4 MiB buffers.
        """
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["publish"], ["tcp:7701"])
        self.assertEqual(options["subscribe"], ["tcp:7702"])
        self.assertEqual(
            (options["max-line"], options["buffer"], options["buffer-bytes"]),
            (65536, 10000, 4 * 1024 * 1024),
        )

    def test_repeatable(self) -> None:
        """
        C{--publish} and C{--subscribe} may be given several times.
        """
        options = Options()
        options.parseOptions(
            ["--publish", "tcp:1", "--publish", "unix:/tmp/p.sock", "--subscribe", "tcp:2"]
        )
        self.assertEqual(options["publish"], ["tcp:1", "unix:/tmp/p.sock"])
        self.assertEqual(options["subscribe"], ["tcp:2"])

    def test_numbers(self) -> None:
        """
        Sizes are parsed as integers and must be positive.
        """
        options = Options()
        options.parseOptions(["--buffer", "5", "--buffer-bytes", "100", "--max-line", "80"])
        self.assertEqual(
            (options["buffer"], options["buffer-bytes"], options["max-line"]), (5, 100, 80)
        )
        for bad in (["--buffer", "0"], ["--max-line", "x"], ["--buffer-bytes", "-1"]):
            self.assertRaises(UsageError, Options().parseOptions, bad)


class MakeServiceTests(SynchronousTestCase):
    """
    The service tree.
    """

    def test_settingsReachEveryPart(self) -> None:
        """
        The settings the options make are the ones every part works with:
        a line posted to C{/publish} is cut at C{--max-line} as on the
        publisher port and over UDP, and history keeps C{--history}.
        """
        options = Options()
        options.parseOptions(
            ["--public", "--max-line", "80", "--history", "3", "--max-publishers", "7"]
            + ["--publish", "tcp:0", "--subscribe", "tcp:0", "--syslog-udp", "127.0.0.1:0"]
        )
        settings = options.settings()
        self.assertEqual((settings.maxLine, settings.history), (80, 3))
        top = makeService(options, MemoryReactorClock())
        children = list(IService(top))
        [broker] = [c for c in children if isinstance(c, Broker)]
        [publishers] = [c for c in children if isinstance(c, PublishersService)]
        [udp] = [c for c in children if isinstance(c, SyslogUDPService)]
        [site] = [
            c.factory
            for c in children
            if isinstance(c, ListeningService) and c.role == "subscribers"
        ]
        factory = publishers.factory
        self.assertEqual((factory.maxLine, factory.maxPublishers), (80, 7))
        self.assertEqual(udp.protocol.maxLine, 80)

        def post(body: bytes) -> list[str]:
            Client(
                site,
                b"POST /publish?app=cut HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
            )
            return [text for run in broker.replay(Filters(), 10).runs for _, text, _ in run.records]

        self.assertEqual(post(b"y" * 200 + b"\nnext\n"), ["y" * 80 + " [truncated]", "next"])
        self.assertEqual(post(b"a\nb\n"), ["next", "a", "b"])

    def test_tree(self) -> None:
        """
        A broker, then one listening service per endpoint, in order.
        """
        options = Options()
        options.parseOptions(
            ["--publish", "tcp:0", "--publish", "unix:x.sock", "--subscribe", "tcp:0"]
        )
        top = makeService(options)
        children = list(IService(top))
        self.assertIsInstance(children[0], Broker)
        self.assertEqual(
            [(c.role, c.description) for c in children[1:] if isinstance(c, ListeningService)],
            [("publishers", "tcp:0"), ("publishers", "unix:x.sock"), ("subscribers", "tcp:0")],
        )

    def test_listensWhenPrivileged(self) -> None:
        """
        Listeners listen in C{privilegedStartService}, before twistd drops
        privileges (C{--uid} with a port below 1024), on the reactor given
        to L{makeService}; stopping stops them.
        """
        options = Options()
        options.parseOptions(["--publish", "tcp:514", "--subscribe", "tcp:80:interface=127.0.0.1"])
        reactor = MemoryReactorClock()
        top = makeService(options, reactor)
        self.assertEqual(reactor.tcpServers, [])
        top.privilegedStartService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(514, ""), (80, "127.0.0.1")],
        )
        top.startService()
        self.assertEqual(len(reactor.tcpServers), 2)
        self.successResultOf(top.stopService())

    def test_backlog(self) -> None:
        """
        Listeners ask for a backlog of 511 unless the endpoint names one or
        takes none.
        """
        self.assertEqual(withBacklog("tcp:7701"), f"tcp:7701:backlog={BACKLOG}")
        self.assertEqual(
            withBacklog("ssl:7443:privateKey=k.pem"), f"ssl:7443:privateKey=k.pem:backlog={BACKLOG}"
        )
        self.assertEqual(withBacklog("unix:/run/l.sock"), f"unix:/run/l.sock:backlog={BACKLOG}")
        self.assertEqual(withBacklog("tcp:7701:backlog=5"), "tcp:7701:backlog=5")
        self.assertEqual(withBacklog("systemd:domain=INET:index=0"), "systemd:domain=INET:index=0")
        reactor = MemoryReactorClock()
        options = Options()
        options.parseOptions(["--publish", "tcp:0", "--subscribe", "tcp:0"])
        makeService(options, reactor).privilegedStartService()
        self.assertEqual([backlog for _, _, backlog, _ in reactor.tcpServers], [BACKLOG, BACKLOG])

    def test_history(self) -> None:
        """
        C{--history} and C{--history-bytes} size the broker's history; 0 turns it off.
        """
        options = Options()
        options.parseOptions(["--history", "0", "--history-bytes", "1000"])
        broker = list(IService(makeService(options, MemoryReactorClock())))[0]
        self.assertEqual((broker.history.maxRecords, broker.history.maxBytes), (0, 1000))
        self.assertRaises(UsageError, Options().parseOptions, ["--history", "-1"])


def runTwistd(*args: str) -> tuple[int, str]:
    """
    Run twistd to the end; its status and all it wrote (twistd sends stderr
    to its log, which -n writes to stdout).
    """
    result = subprocess.run(
        [twistd(), *args], capture_output=True, text=True, timeout=TIMEOUT, env=environment()
    )
    return result.returncode, result.stdout + result.stderr


class StartupFailureTests(SynchronousTestCase):
    """
    A server that cannot listen says so and exits.
    """

    def busyPort(self) -> int:
        """
        A port on 127.0.0.1 that something is listening on.
        """
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        self.addCleanup(busy.close)
        return int(busy.getsockname()[1])

    def test_portInUse(self) -> None:
        """
        A port in use ends twistd with status 1 and one clear line, not a traceback.
        """
        port = self.busyPort()
        status, output = runTwistd(
            "-n", "--pidfile=", "logio", "--publish", f"tcp:{port}:interface=127.0.0.1",
            "--subscribe", "tcp:0:interface=127.0.0.1",
        )  # fmt: skip
        self.assertEqual(status, 1)
        self.assertIn(
            f"logio: cannot listen for publishers on tcp:{port}:interface=127.0.0.1", output
        )
        self.assertIn("Address already in use", output)
        self.assertNotIn("Traceback", output)

    def test_portInUseDaemon(self) -> None:
        """
        Daemonizing, a port in use also ends twistd at once with status 1,
        the reason on the terminal, and no pid file left behind.
        """
        port = self.busyPort()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        pidfile = os.path.join(directory, "twistd.pid")
        status, output = runTwistd(
            f"--pidfile={pidfile}", f"--logfile={os.path.join(directory, 'twistd.log')}",
            "logio", "--publish", "tcp:0:interface=127.0.0.1",
            "--subscribe", f"tcp:{port}:interface=127.0.0.1",
        )  # fmt: skip
        self.assertEqual(status, 1)
        self.assertIn(f"cannot listen for subscribers on tcp:{port}", output)
        # The daemon reports to the terminal first and removes its pid file
        # right after, so on a busy machine that may take a moment.
        waitFor(lambda: not os.path.exists(pidfile), what="the pid file to be removed")

    def test_badEndpoint(self) -> None:
        """
        An endpoint string Twisted cannot parse is one clear line too.
        """
        status, output = runTwistd("-n", "--pidfile=", "logio", "--subscribe", "bogus:1")
        self.assertNotEqual(status, 0)
        self.assertIn("logio: bad endpoint 'bogus:1' for subscribers", output)
        self.assertNotIn("Traceback", output)

    def test_missingKeyFile(self) -> None:
        """
        An C{ssl:} endpoint whose key file is missing is one clear line.
        """
        missing = os.path.abspath(os.path.join(self.mktemp(), "key.pem"))
        description = f"ssl:0:interface=127.0.0.1:privateKey={missing}"
        status, output = runTwistd("-n", "--pidfile=", "logio", "--publish", description)
        self.assertNotEqual(status, 0)
        self.assertIn(f"logio: bad endpoint {description!r} for publishers", output)
        self.assertIn("No such file or directory", output)
        self.assertNotIn("Traceback", output)

    def test_failedLater(self) -> None:
        """
        A listen that fails after start-up is logged as critical, naming the
        endpoint and the reason, and stops the reactor.
        """
        from twisted.internet import reactor

        stopped: list[bool] = []
        self.patch(reactor, "stop", lambda: stopped.append(True))
        service = ListeningService("subscribers", "unix:/nowhere/s.sock", Factory(), reactor)
        with capturedLogs() as events:
            service._failedLater(Failure(CannotListenError("", "/nowhere/s.sock", "no dir")))
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.critical)
        self.assertIn(
            "logio: cannot listen for subscribers on unix:/nowhere/s.sock", formatEvent(event)
        )
        self.assertEqual(stopped, [True])


class AuthOptionTests(SynchronousTestCase):
    """
    C{--auth}, C{--server-name}, and what a server without C{--auth} warns of.
    """

    def test_badTokensFile(self) -> None:
        """
        A tokens file that is missing or holds a bad line stops the server
        with one clear line that names the file but not the token.
        """
        missing = os.path.abspath(self.mktemp())
        status, output = runTwistd("-n", "--pidfile=", "logio", "--auth", missing)
        self.assertNotEqual(status, 0)
        self.assertIn(f"logio: --auth: cannot read the tokens file {missing!r}", output)
        self.assertNotIn("Traceback", output)
        bad = tokensFile(self, "s3cret-token-0123456789 write .*\n")
        status, output = runTwistd("-n", "--pidfile=", "logio", "--auth", bad)
        self.assertNotEqual(status, 0)
        self.assertIn(f"logio: --auth: {bad}, line 1: the role must be pub, sub or both", output)
        self.assertNotIn("s3cret", output)

    def test_serverNames(self) -> None:
        """
        C{--server-name} is repeatable and reaches the gate.
        """
        options = Options()
        options.parseOptions(["--server-name", "logs.example.com", "--server-name", "Other."])
        self.assertEqual(options["server-name"], ["logs.example.com", "Other."])
        self.assertIsNone(options["auth"])
        top = makeService(options, MemoryReactorClock())
        [site] = {
            c.factory
            for c in IService(top)
            if isinstance(c, ListeningService) and c.role == "subscribers"
        }
        self.assertEqual(site.bodies.gate.serverNames, {"logs.example.com", "other"})

    def warnings(
        self,
        address: object,
        guarded: bool = False,
        protected: bool = False,
        level: LogLevel = LogLevel.warn,
    ) -> list[str]:
        service = ListeningService(
            "subscribers", "tcp:0", Factory(), MemoryReactorClock(), guarded, protected
        )

        class Port:
            def getHost(self) -> object:
                return address

        with capturedLogs() as events:
            service._listening(Port())  # type: ignore[arg-type]
        return [formatEvent(e) for e in events if e["log_level"] == level]

    def test_openListenerWarned(self) -> None:
        """
        Without --auth but with --public, a listener beyond loopback is a
        warning saying who can do what; loopback, UNIX sockets and a server
        with --auth are not.  In protected mode (no --auth, no --public) it
        is an info line: only this machine is answered.
        """
        for host in ("0.0.0.0", "::", "10.1.2.3", "fe80::1%eth0"):
            [warning] = self.warnings(IPv4Address("TCP", host, 7702))
            self.assertIn("no --auth but --public: anyone who reaches it can read", warning)
            address = IPv4Address("TCP", host, 7702)
            self.assertEqual(self.warnings(address, protected=True), [])
            [info] = [
                line
                for line in self.warnings(address, protected=True, level=LogLevel.info)
                if "reachable" in line
            ]
            self.assertIn("answers this machine's peers only (--public answers all)", info)
        for host in ("127.0.0.1", "127.1.2.3", "::1"):
            self.assertEqual(self.warnings(IPv4Address("TCP", host, 7702)), [])
        self.assertEqual(self.warnings(UNIXAddress("/run/logio.sock")), [])
        self.assertEqual(self.warnings(IPv4Address("TCP", "0.0.0.0", 7702), guarded=True), [])

    def test_sighupReloads(self) -> None:
        """
        With --auth, SIGHUP reloads the tokens in the reactor's thread; the
        previous handler is back once the service stops.
        """
        path = tokensFile(self, "first-token-0123456789 sub .*\n")
        options = Options()
        options.parseOptions(["--auth", path])
        calls: list[object] = []

        class Reactor(MemoryReactorClock):
            def callFromThread(self, f: Any, *args: object, **kwargs: object) -> None:
                calls.append(f)
                f(*args, **kwargs)

        before = signal.getsignal(signal.SIGHUP)
        top = makeService(options, Reactor())
        [auth] = [c for c in IService(top) if isinstance(c, AuthService)]
        auth.startService()
        self.addCleanup(signal.signal, signal.SIGHUP, before)
        with open(path, "w") as f:
            f.write("second-token-0123456789 sub .*\n")
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(len(calls), 1)
        self.assertIsNotNone(auth.tokens.grant("second-token-0123456789"))
        self.assertIsNone(auth.tokens.grant("first-token-0123456789"))
        auth.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)


class FakeResource:
    """
    The parts of the C{resource} module L{raiseFileLimit} uses, with a
    settable outcome.
    """

    RLIMIT_NOFILE = resource.RLIMIT_NOFILE

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.limits = (soft, hard)
        self.refuse = refuse

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        assert which == self.RLIMIT_NOFILE
        if self.refuse:
            raise ValueError("not allowed to raise maximum limit")
        self.limits = limits


class RaiseFileLimitTests(SynchronousTestCase):
    """
    The server raises its open-files limit as far as it may.
    """

    def test_raised(self) -> None:
        """
        The soft limit is raised to the hard limit.
        """
        fake = FakeResource(1024, 524288)
        self.patch(services, "resource", fake)
        services.raiseFileLimit()
        self.assertEqual(fake.limits, (524288, 524288))

    def test_refused(self) -> None:
        """
        A refusal is logged with both limits, and start-up goes on.
        """
        fake = FakeResource(256, resource.RLIM_INFINITY, refuse=True)
        self.patch(services, "resource", fake)
        with capturedLogs() as events:
            services.raiseFileLimit()
        self.assertEqual(fake.limits, (256, resource.RLIM_INFINITY))
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.warn)
        message = formatEvent(event)
        self.assertIn("Could not raise the open-files limit from 256", message)
        self.assertIn("not allowed to raise maximum limit", message)


class DockerfileTests(SynchronousTestCase):
    """
    The Dockerfile cannot be built here; check what it says.
    """

    def setUp(self) -> None:
        with open(os.path.join(ROOT, "Dockerfile")) as f:
            self.lines = [line.strip() for line in f]

    def test_installAndPluginCache(self) -> None:
        """
        It installs the dependencies in a layer before the source is copied,
        then the package (not editable), and regenerates the plugin cache.
        """
        text = "\n".join(self.lines)
        self.assertLess(text.index("COPY setup.cfg setup.py README.md ./"), text.index("COPY . ."))
        self.assertLess(text.index("pip install --no-cache-dir ."), text.index("COPY . ."))
        self.assertIn("pip install --no-cache-dir --no-deps .", text)
        self.assertNotIn("-e .", text)
        self.assertLess(text.index("getPlugins(IPlugin, twisted.plugins)"), text.index("USER "))

    def test_portsAndCommand(self) -> None:
        """
        It exposes both ports, runs twistd in the foreground without a pid
        file as a user that is not root, checks /healthz, and stops with
        SIGTERM (which ends every stream cleanly).
        """
        self.assertIn("EXPOSE 7701 7702", self.lines)
        # Every peer of a container is beyond its loopback: not protected.
        self.assertIn('CMD ["twistd", "-n", "--pidfile=", "logio", "--public"]', self.lines)
        self.assertTrue(self.lines[0].startswith("FROM python:3.11-slim"))
        [user] = [line for line in self.lines if line.startswith("USER ")]
        self.assertNotIn(user.split()[1], ("root", "0"))
        self.assertIn("STOPSIGNAL SIGTERM", self.lines)
        text = "\n".join(self.lines)
        self.assertIn("HEALTHCHECK", text)
        self.assertIn("http://127.0.0.1:7702/healthz", text)

    def test_dockerignore(self) -> None:
        """
        The build context leaves out virtual environments, caches, tests and
        the benchmark.
        """
        with open(os.path.join(ROOT, ".dockerignore")) as f:
            ignored = {line.strip() for line in f if line.strip()}
        for entry in (
            ".venv",
            "venv",
            "__pycache__",
            "*.pyc",
            "_trial_temp",
            ".git",
            "tests",
            "bench",
        ):
            self.assertIn(entry, ignored)


class ProjectFilesTests(SynchronousTestCase):
    """
    What a newcomer reads before running anything.
    """

    def read(self, name: str) -> str:
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            return f.read()

    def test_license(self) -> None:
        """
        A LICENSE file holds the MIT licence the metadata names.
        """
        self.assertIn("license = MIT", self.read("setup.cfg"))
        self.assertTrue(self.read("LICENSE").startswith("MIT License"))

    def test_installFromTheCheckout(self) -> None:
        """
        The README warns that the index's logio is another project.
        """
        self.assertIn("not with `pip install logio`", self.read("README.md"))

    def test_regexExamplesEncoded(self) -> None:
        """
        The README shows how to pass a regular expression so that it
        arrives whole: curl's --data-urlencode, or logio tail's flags.
        """
        readme = self.read("README.md")
        self.assertIn("curl -NG --data-urlencode 'log=\\d+ms'", readme)
        self.assertIn("logio tail --log '\\d+ms'", readme)

    def test_helpStandsAlone(self) -> None:
        """
        The commands' help explains the URL itself, and sends nobody to a
        README a pip user does not have.
        """
        for command in ("pub", "tail"):
            result = subprocess.run(
                logio(command, "--help"),
                capture_output=True,
                text=True,
                env=environment(),
                timeout=TIMEOUT,
            )
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("URL", result.stdout)
            self.assertNotIn("README", result.stdout)
