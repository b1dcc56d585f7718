"""
End-to-end tests: the installed C{twistd -n logio} in a subprocess on free
ports, driven with real sockets, C{curl} and the exact bytes the Go client
sends.
"""

from __future__ import annotations

import subprocess

from twisted.trial.unittest import SynchronousTestCase

from tests.server import Server

GO_STREAM = (
    b'{"app":"myapp","proc":"web","host":"foobar"}'
    b'{"time":"2016-12-06T17:14:21.448123-05:00","raw":"2016/12/06 17:14:21 INFO hi\\n"}'
    b'{"time":"2016-12-06T17:14:22.001999-05:00","raw":"second\\n"}'
)


class PluginTests(SynchronousTestCase):
    """
    The installed twistd knows the plugin.
    """

    def test_twistdHelpListsLogio(self) -> None:
        """
        C{twistd --help} lists the logio command.
        """
        from tests.server import twistd

        out = subprocess.run(
            [twistd(), "--help"], capture_output=True, text=True, timeout=60
        ).stdout
        self.assertRegex(out, r"\n\s+logio\s+A log plexer")


class EndToEndTests(SynchronousTestCase):
    """
    A real server, real sockets.
    """

    def setUp(self) -> None:
        self.server = Server(self)

    def waitSubscribed(self, count: int) -> None:
        """
        Subscriptions are registered when the headers arrive, so nothing to
        wait for: this documents that the header read is the barrier.
        """

    def test_goClientStream(self) -> None:
        """
        The exact concatenated JSON of the Go client comes out formatted.
        """
        stream = self.server.subscribe("app=myapp")
        self.assertEqual(stream.status, 200)
        self.assertEqual(stream.headers["content-type"], "text/plain; charset=utf-8")
        self.server.publish(GO_STREAM).close()
        self.assertEqual(
            stream.lines(2),
            [
                b"2016-12-06T22:14:21.448 myapp[web] foobar: 2016/12/06 17:14:21 INFO hi",
                b"2016-12-06T22:14:22.001 myapp[web] foobar: second",
            ],
        )
