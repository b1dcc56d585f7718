"""
Tests of the client in whole Python processes: C{import logio} and
C{import logio.auto}, the flush at exit, and C{os.fork()}.
"""

from __future__ import annotations

import re
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.support.ports import freePort
from tests.support.processes import runPython
from tests.support.sink import Sink


class ImportTests(SynchronousTestCase):
    """
    What importing does.
    """

    def test_importLogioIsQuiet(self) -> None:
        """
        import logio attaches, starts and loads nothing; logio.LogioHandler loads the handler.
        """
        result = runPython(
            "import logging, sys, threading, logio\n"
            "print(len(logging.getLogger().handlers), threading.active_count(),"
            " 'logio.client.handler' in sys.modules)\n"
            "print(logio.LogioHandler.__module__)\n",
            LOGIO_URL="logio://127.0.0.1:1?app=a",
        )
        self.assertEqual(result.stdout.split(), [b"0", b"1", b"False", b"logio.client.handler"])

    def test_noTwisted(self) -> None:
        """
        The client (handler, URL checks and command) works where Twisted cannot be imported.
        """
        result = runPython(
            "import sys\n"
            "sys.modules['twisted'] = None\n"
            "import logio.auto, logio.client.cli\n"
            "print(logio.auto.handler.publisher.target.app)\n",
            LOGIO_URL="logio://127.0.0.1:1?app=plain",
        )
        self.assertEqual((result.stdout, result.returncode), (b"plain\n", 0), result.stderr)

    def test_autoWithoutURL(self) -> None:
        """
        C{import logio.auto} with LOGIO_URL unset does nothing.
        """
        result = runPython(
            "import logging, threading, logio.auto\n"
            "print(logio.auto.handler, len(logging.getLogger().handlers),"
            " threading.active_count())\n",
            LOGIO_URL=None,
        )
        self.assertEqual(result.stdout.split(), [b"None", b"0", b"1"], result.stderr)

    def test_autoPublishesRootRecords(self) -> None:
        """
        import logio.auto publishes what reaches the root logger at the app's levels.
        """
        sink = Sink(self)
        result = runPython(
            "import logio.auto, logging\n"
            "logging.getLogger().setLevel(logging.INFO)\n"
            "logging.debug('not at this level')\n"
            "logging.info('root info')\n"
            "logging.getLogger('app.db').warning('named %s', 'warning')\n",
            LOGIO_URL=f"logio://127.0.0.1:{sink.port}?app=auto&proc=web&host=h1",
            LOGIO_LEVEL=None,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            sink.waitForRaws(2), ["INFO root: root info\n", "WARNING app.db: named warning\n"]
        )
        self.assertEqual(sink.values(0)[0], {"app": "auto", "proc": "web", "host": "h1"})

    def test_defaultRootLevelIsWarning(self) -> None:
        """
        Left alone, Python's root logger passes WARNING and above only.
        """
        sink = Sink(self)
        runPython(
            "import logio.auto, logging\nlogging.info('dropped')\nlogging.error('kept')\n",
            LOGIO_URL=f"logio://127.0.0.1:{sink.port}?app=a",
        )
        self.assertEqual(sink.waitForRaws(1), ["ERROR root: kept\n"])

    def test_logioLevel(self) -> None:
        """
        LOGIO_LEVEL sets the handler's level, by name in any case or by number.
        """
        for level in ("error", "40"):
            sink = Sink(self)
            result = runPython(
                "import logio.auto, logging\n"
                "logging.getLogger().setLevel(logging.DEBUG)\n"
                "logging.warning('below')\nlogging.error('at')\n"
                "print(logio.auto.handler.level)\n",
                LOGIO_URL=f"logio://127.0.0.1:{sink.port}?app=a",
                LOGIO_LEVEL=level,
            )
            self.assertEqual(result.stdout, b"40\n", result.stderr)
            self.assertEqual(sink.waitForRaws(1), ["ERROR root: at\n"])

    def test_badLevel(self) -> None:
        """
        A LOGIO_LEVEL that names no level fails the import with a clear ValueError.
        """
        result = runPython(
            "import logio.auto", LOGIO_URL="logio://127.0.0.1:1?app=a", LOGIO_LEVEL="LOUD"
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"ValueError: LOGIO_LEVEL='LOUD' is not a logging level", result.stderr)

    def test_badURL(self) -> None:
        """
        A LOGIO_URL without an app fails the import with a clear ValueError.
        """
        result = runPython("import logio.auto", LOGIO_URL="logio://127.0.0.1:1")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"ValueError: logio URL 'logio://127.0.0.1:1' has no app", result.stderr)

    def test_badURLHidesPassword(self) -> None:
        """
        A bad LOGIO_URL in the Go client's user:pass@ shape fails the import
        without the password anywhere in what is printed.
        """
        result = runPython("import logio.auto", LOGIO_URL="logio://user:s3cret@127.0.0.1:1?prc=x")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"ValueError: logio URL 'logio://127.0.0.1:1?prc=x'", result.stderr)
        self.assertNotIn(b"s3cret", result.stderr + result.stdout)

    def test_userAndPassword(self) -> None:
        """
        A LOGIO_URL with user:pass@ imports and publishes, the password as
        the token.
        """
        sink = Sink(self)
        result = runPython(
            "import logging, logio.auto; logging.warning('hi')",
            LOGIO_URL=f"logio://user:s3cret@127.0.0.1:{sink.port}?app=a",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        sink.waitForRaws(1)
        self.assertEqual(sink.values(0)[0]["token"], "s3cret")


class ConsoleTests(SynchronousTestCase):
    """
    With C{LOGIO_URL} set, C{import logio.auto} leaves the application's own
    console output exactly as it is without it.
    """

    def both(self, code: str) -> tuple[bytes, Sink]:
        """
        Run C{code} without and with C{LOGIO_URL}; check that its console
        output is the same, and return it and the server it published to.
        """
        without = runPython(code, LOGIO_URL=None)
        sink = Sink(self)
        withURL = runPython(code, LOGIO_URL=f"logio://127.0.0.1:{sink.port}?app=a")
        self.assertEqual((without.returncode, withURL.returncode), (0, 0), withURL.stderr)
        self.assertEqual(withURL.stderr, without.stderr)
        self.assertEqual(withURL.stdout, without.stdout)
        return without.stderr, sink

    def test_basicConfigAfterImport(self) -> None:
        """
        basicConfig after the import still configures the console; the
        records go to logio too.
        """
        stderr, sink = self.both(
            "import logio.auto, logging\n"
            "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
            "logging.info('info line')\nlogging.warning('warn line')\n"
        )
        self.assertEqual(stderr, b"INFO info line\nWARNING warn line\n")
        self.assertEqual(
            sink.waitForRaws(2), ["INFO root: info line\n", "WARNING root: warn line\n"]
        )

    def test_basicConfigBeforeImport(self) -> None:
        """
        basicConfig before the import: the same.
        """
        stderr, sink = self.both(
            "import logging\n"
            "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
            "import logio.auto\n"
            "logging.info('info line')\n"
        )
        self.assertEqual(stderr, b"INFO info line\n")
        self.assertEqual(sink.waitForRaws(1), ["INFO root: info line\n"])

    def test_unconfigured(self) -> None:
        """
        Without any configuration, a warning of a logger still reaches
        stderr through logging's last resort; the module-level
        logging.warning() still configures the root logger; a logger's own
        handler still counts.
        """
        stderr, sink = self.both(
            "import logio.auto, logging, sys\n"
            "logging.getLogger('app').warning('last resort')\n"
            "logging.warning('configured')\nlogging.info('not shown')\n"
            "own = logging.getLogger('own')\n"
            "own.addHandler(logging.StreamHandler(sys.stdout))\n"
            "own.warning('to stdout too')\n"
        )
        self.assertEqual(
            stderr, b"last resort\nWARNING:root:configured\nWARNING:own:to stdout too\n"
        )
        self.assertEqual(
            sink.waitForRaws(3),
            [
                "WARNING app: last resort\n",
                "WARNING root: configured\n",
                "WARNING own: to stdout too\n",
            ],
        )

    def test_dictConfigSaid(self) -> None:
        """
        A dictConfig that closes the handler (as Django's does) is said once
        on stderr, with what to add to the configuration.
        """
        code = (
            "import logio.auto, logging.config\n"
            "config = {'version': 1, 'handlers': {'console': {'class': 'logging.StreamHandler'}},"
            " 'root': {'handlers': ['console'], 'level': 'INFO'}}\n"
            "logging.config.dictConfig(config)\nlogging.config.dictConfig(config)\n"
            "logging.info('after')\n"
        )
        sink = Sink(self)
        result = runPython(code, LOGIO_URL=f"logio://127.0.0.1:{sink.port}?app=a")
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stderr.decode().splitlines()
        said = [line for line in lines if "logging was reconfigured" in line]
        self.assertEqual(len(said), 1, lines)
        self.assertIn(f"records no longer go to 127.0.0.1:{sink.port}", said[0])
        self.assertIn('"class": "logio.LogioHandler"', said[0])
        self.assertEqual(lines[-1], "after")
        without = runPython(code, LOGIO_URL=None)
        self.assertEqual(without.stderr, b"after\n")


class ExitTests(SynchronousTestCase):
    """
    The flush at interpreter exit.
    """

    def test_flushAtExit(self) -> None:
        """
        Records still queued when the program ends are sent before it exits.
        """
        sink = Sink(self)
        result = runPython(
            "import logio.auto, logging\nfor i in range(2000):\n    logging.warning('%d', i)\n",
            LOGIO_URL=f"logio://127.0.0.1:{sink.port}?app=a",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        raws = sink.waitForRaws(2000)
        self.assertEqual(raws, [f"WARNING root: {i}\n" for i in range(2000)])

    def test_exitWaitsAtMostFlushTimeout(self) -> None:
        """
        With the server away, exit waits about flush_timeout, then goes.
        """
        started = time.monotonic()
        result = runPython(
            "import logging, logio\n"
            f"handler = logio.LogioHandler('logio://127.0.0.1:{freePort()}?app=a',"
            " flush_timeout=1.0)\n"
            "logging.getLogger().addHandler(handler)\n"
            "logging.error('lost')\n",
        )
        elapsed = time.monotonic() - started
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertGreater(elapsed, 1.0)
        self.assertLess(elapsed, 4.0)

    def test_lossSaidAtExit(self) -> None:
        """
        With the server missing, the exit says on stderr how many records
        were dropped and how many left unsent, naming the server without
        its token.
        """
        port = freePort()
        result = runPython(
            "import logging, logio\n"
            f"handler = logio.LogioHandler('logio://s3cret@127.0.0.1:{port}?app=a', flush_timeout=0.5)\n"
            "logging.getLogger().addHandler(handler)\n"
            "for i in range(12000):\n    logging.error('%d', i)\n",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(
            f"logio: exiting with records lost for 127.0.0.1:{port}: 2000 dropped "
            "(the queue was full) and 10000 not sent (server unreachable or too slow)".encode(),
            result.stderr,
        )
        self.assertNotIn(b"s3cret", result.stderr)

    def test_lossSaidAtExitStalled(self) -> None:
        """
        With a server that takes the connection and never reads, the exit
        says how many records were lost.
        """
        sink = Sink(self, read=False)
        result = runPython(
            "import logging, logio\n"
            f"handler = logio.LogioHandler('logio://127.0.0.1:{sink.port}?app=a', flush_timeout=0.5)\n"
            "logging.getLogger().addHandler(handler)\n"
            "for i in range(10000):\n    logging.error('%d %s', i, 'x' * 2000)\n",
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        [line] = [line for line in result.stderr.splitlines() if b"exiting" in line]
        dropped, unsent = map(int, re.findall(rb"(\d+) (?:dropped|not sent)", line))
        # What reached the kernel's socket buffers counts as sent; the rest
        # was dropped from the full queue or is still unsent.
        self.assertGreater(dropped + unsent, 0, line)
        self.assertLessEqual(dropped + unsent, 10000, line)

    def test_nothingSaidWhenAllSent(self) -> None:
        """
        When every record was sent, the exit says nothing.
        """
        sink = Sink(self)
        result = runPython(
            "import logio.auto, logging\nlogging.warning('sent')\n",
            LOGIO_URL=f"logio://127.0.0.1:{sink.port}?app=a",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn(b"exiting", result.stderr)


class LateRecordTests(SynchronousTestCase):
    """
    Records logged after the exit flush.
    """

    def test_reportedOnce(self) -> None:
        """
        Records logged by an atexit function that runs after the handler's
        flush are not sent, and stderr says so once.
        """
        sink = Sink(self)
        result = runPython(
            "import atexit, logging\n"
            "atexit.register(lambda: (logging.error('late 1'), logging.error('late 2')))\n"
            "import logio.auto\n"
            "logging.error('in time')\n",
            LOGIO_URL=f"logio://127.0.0.1:{sink.port}?app=a",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(sink.waitForRaws(1), ["ERROR root: in time\n"])
        self.assertEqual(result.stderr.count(b"logged after the handler"), 1, result.stderr)


class ReentryTests(SynchronousTestCase):
    """
    Logging from code that interrupts logging.
    """

    def test_signalHandlerLogs(self) -> None:
        """
        A signal handler that logs, firing again and again while the main
        code logs, never deadlocks (the queue's lock is reentrant).
        """
        result = runPython(
            "import faulthandler, logging, signal, time, logio\n"
            f"h = logio.LogioHandler('logio://127.0.0.1:{freePort()}?app=a', flush_timeout=0.1)\n"
            "h.publisher.report = lambda message: None\n"
            "log = logging.getLogger('t'); log.setLevel(logging.INFO); log.addHandler(h)\n"
            "fired = []\n"
            "stopping = []\n"
            "def alarm(number, frame):\n"
            "    fired.append(1); log.info('from the handler')\n"
            "    if not stopping:\n"
            "        signal.setitimer(signal.ITIMER_REAL, 0.0007)\n"
            "signal.signal(signal.SIGALRM, alarm)\n"
            "signal.setitimer(signal.ITIMER_REAL, 0.0007)\n"
            "faulthandler.dump_traceback_later(20, exit=True)\n"
            "end = time.monotonic() + 2\n"
            "while time.monotonic() < end:\n"
            "    log.info('main')\n"
            # A signal already pending may run the handler once more: it
            # must not arm the timer again for after the interpreter exits.
            "stopping.append(1)\n"
            "signal.setitimer(signal.ITIMER_REAL, 0)\n"
            "signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
            "print('done', len(fired) > 100)\n",
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), b"done True")

    def test_closeAfterFailedFlushDoesNotWaitAgain(self) -> None:
        """
        With the server away, flush() then close() (as logging.shutdown and
        dictConfig do) wait one flush_timeout, not two.
        """
        result = runPython(
            "import logging, time, logio\n"
            f"h = logio.LogioHandler('logio://127.0.0.1:{freePort()}?app=a', flush_timeout=1.0)\n"
            "h.publisher.report = lambda message: None\n"
            "logging.getLogger().addHandler(h)\n"
            "logging.error('lost')\n"
            "start = time.monotonic(); h.flush(); h.close()\n"
            "print(round(time.monotonic() - start))\n",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), b"1")


class ForkTests(SynchronousTestCase):
    """
    A forked child publishes on a connection and thread of its own.
    """

    def test_childHasOwnConnection(self) -> None:
        """
        A forked child publishes on its own connection; the parent goes on with its own.
        """
        sink = Sink(self)
        result = runPython(
            "import logging, os, logio.auto\n"
            "logging.warning('parent before')\n"
            "logio.auto.handler.flush()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    logging.warning('child')\n"
            "    raise SystemExit(0)\n"
            "os.waitpid(pid, 0)\n"
            "logging.warning('parent after')\n",
            LOGIO_URL=f"logio://127.0.0.1:{sink.port}?app=a",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        sink.waitForRaws(3)
        byConnection = sorted(
            [value["raw"] for value in sink.values(i) if "raw" in value]
            for i in range(len(sink.connections))
        )
        self.assertEqual(
            byConnection,
            [
                ["WARNING root: child\n"],
                ["WARNING root: parent before\n", "WARNING root: parent after\n"],
            ],
        )

    def test_multiprocessingChildFlushes(self) -> None:
        """
        A C{multiprocessing.Process} child (which ends with C{os._exit}, no
        atexit) still sends what it logged before it ends.
        """
        sink = Sink(self)
        result = runPython(
            "import logging, multiprocessing, logio.auto\n"
            "def work():\n"
            "    logging.warning('from the child')\n"
            "if __name__ == '__main__':\n"
            "    context = multiprocessing.get_context('fork')\n"
            "    child = context.Process(target=work)\n"
            "    child.start(); child.join()\n"
            "    print(child.exitcode)\n",
            LOGIO_URL=f"logio://127.0.0.1:{sink.port}?app=a",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), b"0")
        self.assertEqual(sink.waitForRaws(1), ["WARNING root: from the child\n"])

    def test_queuedRecordsStayWithParent(self) -> None:
        """
        Records queued when the parent forks stay the parent's; the child starts empty.
        """
        result = runPython(
            "import logging, os, logio.auto\n"
            "publisher = logio.auto.handler.publisher\n"
            "publisher.report = lambda message: None\n"
            "logging.warning('queued in parent')\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    print('child', publisher.pending, flush=True)\n"
            "    os._exit(0)\n"
            "os.waitpid(pid, 0)\n"
            "print('parent', publisher.pending, flush=True)\n"
            "publisher.close(0)\n",
            LOGIO_URL=f"logio://127.0.0.1:{freePort()}?app=a",
        )
        self.assertEqual(result.stdout, b"child 0\nparent 1\n", result.stderr)
