"""
Tests for L{logio.cluster.address}: Redis URLs, and the TLS options for a
C{rediss://} server.
"""

from __future__ import annotations

import os

from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.trial.unittest import SynchronousTestCase

from logio.cluster.address import RedisAddress, clientTLSOptions, parseRedisURL
from tests.support.tls import certificates


class ParseTests(SynchronousTestCase):
    """
    L{parseRedisURL} reads every part of a Redis URL, with defaults.
    """

    def test_defaults(self) -> None:
        """
        A host alone means port 6379, database 0, no credentials, no TLS.
        """
        self.assertEqual(parseRedisURL("redis://cache.local"), RedisAddress("cache.local"))

    def test_everything(self) -> None:
        """
        User, password, host, port and database are all read.
        """
        self.assertEqual(
            parseRedisURL("redis://logio:s3cret@10.0.0.5:6380/2"),
            RedisAddress("10.0.0.5", 6380, 2, "logio", "s3cret"),
        )

    def test_passwordOnly(self) -> None:
        """
        C{:password@} gives a password for the default user.
        """
        address = parseRedisURL("redis://:pw@h/")
        self.assertEqual((address.username, address.password, address.db), (None, "pw", 0))

    def test_escapes(self) -> None:
        """
        URL escapes in the user name and password are decoded; an unescaped
        C{@} in the password is kept too (the host follows the last one).
        """
        address = parseRedisURL("redis://us%3Aer:p%40ss%2Fw%3Ad@h")
        self.assertEqual((address.username, address.password), ("us:er", "p@ss/w:d"))
        self.assertEqual(parseRedisURL("redis://:a@b@h").password, "a@b")

    def test_tls(self) -> None:
        """
        C{rediss://} means TLS, with an optional CA file.
        """
        address = parseRedisURL("rediss://redis.example:6390/1", ca="/etc/ca.pem")
        self.assertEqual(
            address, RedisAddress("redis.example", 6390, 1, tls=True, ca="/etc/ca.pem")
        )

    def test_ipv6(self) -> None:
        """
        An IPv6 address is written in brackets and kept without them.
        """
        address = parseRedisURL("redis://[::1]:7000")
        self.assertEqual((address.host, address.port), ("::1", 7000))
        self.assertEqual(address.describe(), "redis://[::1]:7000/0")

    def test_describe(self) -> None:
        """
        L{RedisAddress.describe} leaves the credentials out, as does the
        address's repr.
        """
        address = parseRedisURL("rediss://u:secret@h:1/3")
        self.assertEqual(address.describe(), "rediss://h:1/3")
        self.assertNotIn("secret", repr(address))

    def test_bad(self) -> None:
        """
        A bad URL raises L{ValueError} saying what is wrong, without the
        password.
        """
        cases = {
            "localhost:6379": "starts with redis://",
            "http://h": "starts with redis://",
            "redis:h": "starts with redis://",
            "redis://:secret@": "no host",
            "redis://:secret@h:port": "port",
            "redis://:secret@h:99999": "port",
            "redis://:secret@h:0": "port",
            "redis://:secret@h/x": "database number",
            "redis://:secret@h/1/2": "database number",
            "redis://:secret@h/0?db=1": "?query",
            "redis://:sec#ret@h": "%23",
            "redis://user@h": "no password",
            "redis://:secret@[::1": "IPv6",
        }
        for url, expected in cases.items():
            with self.assertRaises(ValueError, msg=url) as raised:
                parseRedisURL(url)
            self.assertIn(expected, str(raised.exception), url)
            self.assertNotIn("sec", str(raised.exception), url)

    def test_caWithoutTLS(self) -> None:
        """
        A CA file with a C{redis://} URL is refused.
        """
        with self.assertRaises(ValueError) as raised:
            parseRedisURL("redis://h", ca="/etc/ca.pem")
        self.assertIn("rediss://", str(raised.exception))


class TLSOptionsTests(SynchronousTestCase):
    """
    L{clientTLSOptions} trusts the CA file given, or the system's.
    """

    def test_caFile(self) -> None:
        """
        A CA file with certificates gives client TLS options.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        paths = certificates(directory, ["127.0.0.1"])
        options = clientTLSOptions(parseRedisURL("rediss://127.0.0.1", ca=paths["ca"]))
        self.assertTrue(IOpenSSLClientConnectionCreator.providedBy(options))

    def test_systemTrust(self) -> None:
        """
        Without a CA file, client TLS options are made from the system's
        trust.
        """
        options = clientTLSOptions(parseRedisURL("rediss://redis.example"))
        self.assertTrue(IOpenSSLClientConnectionCreator.providedBy(options))

    def test_badCAFile(self) -> None:
        """
        A CA file that is missing or holds no certificate is refused, naming
        the file.
        """
        missing = os.path.join(self.mktemp(), "ca.pem")
        garbage = self.mktemp()
        with open(garbage, "w") as handle:
            handle.write("not a certificate\n")
        for path, expected in ((missing, "cannot read"), (garbage, "no PEM certificate")):
            with self.assertRaises(ValueError) as raised:
                clientTLSOptions(parseRedisURL("rediss://h", ca=path))
            self.assertIn(expected, str(raised.exception))
            self.assertIn(path, str(raised.exception))
