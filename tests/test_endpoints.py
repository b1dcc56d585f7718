"""
End-to-end tests of the endpoint options: C{unix:} and C{ssl:} endpoints,
and several endpoints of each kind at once.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess

import twisted.test
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.ports import socketPath
from tests.support.server import Server, Stream, listening
from tests.support.waiting import TIMEOUT, waitFor

#: Twisted's own test key and self-signed certificate, in one file.
PEM = os.path.join(os.path.dirname(twisted.test.__file__), "server.pem")
RECORD = b'{"time":"2016-12-06T17:14:21.448123-05:00","raw":"over the wire\\n"}'
LINE = b"2016-12-06T22:14:21.448 myapp[web] foobar: over the wire"


def unverified() -> ssl.SSLContext:
    """
    A client context that accepts the self-signed test certificate.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class EndpointTests(SynchronousTestCase):
    """
    Any Twisted server endpoint string works for either side.
    """

    def test_unixSockets(self) -> None:
        """
        Publish and subscribe (with C{curl --unix-socket}) over UNIX sockets.
        """
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed")
        publish = socketPath(self, "publish.sock")
        subscribe = os.path.join(os.path.dirname(publish), "subscribe.sock")
        server = Server(self, "--publish", f"unix:{publish}", "--subscribe", f"unix:{subscribe}")
        self.assertEqual(server.addresses, {"publishers": [publish], "subscribers": [subscribe]})
        process = subprocess.Popen(
            [curl, "-sN", "--unix-socket", subscribe, "http://logio/?app=myapp"],
            stdout=subprocess.PIPE,
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        server.subscribed(1)
        publisher = socket.socket(socket.AF_UNIX)
        publisher.connect(publish)
        publisher.sendall(b'{"app":"myapp","proc":"web"}' + RECORD)
        publisher.close()
        assert process.stdout is not None
        self.assertEqual(
            process.stdout.readline(),
            b"2016-12-06T22:14:21.448 myapp[web] unix: over the wire\n",
        )

    def test_tlsAndPlainTogether(self) -> None:
        """
        Repeated options listen on each endpoint: TLS and plain TCP
        publishers reach TLS and plain subscribers alike.
        """
        tls = f"ssl:0:interface=127.0.0.1:privateKey={PEM}"
        plain = "tcp:0:interface=127.0.0.1"
        server = Server(
            self, "--publish", tls, "--publish", plain, "--subscribe", tls, "--subscribe", plain
        )

        def both() -> dict[str, list[str]] | None:
            # The server is up once it names one address of each kind;
            # here, wait for the second of each.
            addresses = listening(server.log())
            if addresses and all(len(each) == 2 for each in addresses.values()):
                return addresses
            return None

        found = waitFor(both, what="both addresses of each kind")
        assert isinstance(found, dict)
        ports = {
            role: [int(address.rsplit(":", 1)[1]) for address in addresses]
            for role, addresses in found.items()
        }
        secure = Stream("127.0.0.1", ports["subscribers"][0], "/?app=myapp", context=unverified())
        clear = Stream("127.0.0.1", ports["subscribers"][1], "/?app=myapp")
        self.assertEqual((secure.status, clear.status), (200, 200))
        raw = socket.create_connection(("127.0.0.1", ports["publishers"][0]), timeout=TIMEOUT)
        publisher = unverified().wrap_socket(raw, server_hostname="127.0.0.1")
        publisher.sendall(b'{"app":"myapp","proc":"web","host":"foobar"}' + RECORD)
        publisher.close()
        other = socket.create_connection(("127.0.0.1", ports["publishers"][1]), timeout=TIMEOUT)
        other.sendall(b"app=myapp&proc=web&host=foobar\nin the clear\n")
        other.close()
        for stream in (secure, clear):
            lines = stream.lines(2)
            self.assertIn(LINE, lines)
            self.assertIn(
                b"myapp[web] foobar: in the clear", [line.split(b" ", 1)[1] for line in lines]
            )
