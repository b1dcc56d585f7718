"""
End-to-end tests of C{logio tail} with the real server: it survives a
restart of the server without a record lost or printed twice, in text and
as JSON, and passes C{--level} on.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from logio.formats import SHUTTING_DOWN
from tests.support.processes import Running, logio
from tests.support.server import Server, get
from tests.support.waiting import waitFor

#: A record of the restart test as the text output shows it: its number.
_NUMBERED = re.compile(rb"^\S+ count\[p\] \S+: n (\d+)$")


def publishNumbers(server: Server, numbers: range) -> None:
    """
    Publish C{n 0}, C{n 1}... as records of the topic C{count[p]}.
    """
    server.publish(b"app=count&proc=p\n" + b"".join(b"n %d\n" % n for n in numbers)).close()


def printedNumbers(tail: Running, json_: bool) -> list[int]:
    """
    The numbers of the records C{tail} printed, in the order printed.
    """
    if json_:
        records = [json.loads(line) for line in tail.out.splitlines()]
        return [int(r["log"].split()[1]) for r in records if r.get("app") == "count"]
    return [
        int(found.group(1))
        for found in map(_NUMBERED.match, tail.out.splitlines())
        if found is not None
    ]


class TailRestartTests(SynchronousTestCase):
    """
    C{logio tail} across a restart of the server on the same ports.
    """

    def test_restart(self) -> None:
        """
        At SIGTERM each tail prints the server's last notice and says it on
        stderr; it reconnects to the new server and resumes where it left
        off: every number published, before the
        restart, after it but before the reconnection, and after the
        reconnection, is printed once, in order, as text and as JSON.
        """
        first = Server(self)
        url = f"http://127.0.0.1:{first.subscribePort}/?app=^count$"
        tails = {
            False: Running(self, logio("tail", url), stdout=subprocess.PIPE),
            True: Running(self, logio("tail", "--json", url), stdout=subprocess.PIPE),
        }
        first.subscribed(2)
        publishNumbers(first, range(0, 50))
        for tail in tails.values():
            tail.waitOut(b"n 49")
        self.assertEqual(first.stop(), -signal.SIGTERM)
        said = f"logio tail: 127.0.0.1:{first.subscribePort}: {SHUTTING_DOWN}; reconnecting\n"
        for tail in tails.values():
            tail.waitErr(said.encode())
        self.assertIn(f"logio[logio] 127.0.0.1: {SHUTTING_DOWN}\n".encode(), tails[False].out)
        self.assertIn(f'"notice": "{SHUTTING_DOWN}"}}\n'.encode(), tails[True].out)
        # Held, so that the next records surely come before they reconnect.
        for tail in tails.values():
            tail.process.send_signal(signal.SIGSTOP)
        try:
            second = Server(self, *first.samePorts())
            publishNumbers(second, range(50, 75))
            waitFor(
                lambda: b'"n 74"' in get(second, "/?follow=0&tail=100&format=json").read(),
                what="n 74 in the new server's history",
            )
        finally:
            for tail in tails.values():
                tail.process.send_signal(signal.SIGCONT)
        again = f"logio tail: connected to 127.0.0.1:{second.subscribePort} again\n".encode()
        for tail in tails.values():
            tail.waitErr(again)
        # The wait between attempts, 2 s at most, is checked in
        # test_client_tail.ReconnectTests: no time is asserted here.
        publishNumbers(second, range(75, 100))
        for format, tail in tails.items():
            tail.waitOut(b"n 99")
            self.assertEqual(printedNumbers(tail, format), list(range(100)), tail.out)
            self.assertEqual(tail.err, said.encode() + again, tail.err)


class TailLevelTests(SynchronousTestCase):
    """
    C{logio tail --level}.
    """

    def test_level(self) -> None:
        """
        --level warn prints the records at warn and above only.
        """
        server = Server(self)
        tail = Running(
            self,
            logio("tail", "--level", "warn", f"127.0.0.1:{server.subscribePort}/?app=^lv$"),
            stdout=subprocess.PIPE,
        )
        server.subscribed(1)
        texts = [b"DEBUG noise", b"WARN careful", b"INFO fine", b"ERROR boom", b"FATAL end"]
        server.publish(b"app=lv&proc=p\n" + b"".join(text + b"\n" for text in texts)).close()
        tail.waitOut(b"FATAL end\n")
        self.assertEqual(
            [line.split(b": ", 1)[1] for line in tail.out.splitlines()],
            [b"WARN careful", b"ERROR boom", b"FATAL end"],
        )
