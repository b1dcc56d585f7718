"""
Tests for L{logio.client.url}: publisher URLs and their defaults.
"""

from __future__ import annotations

import os
import socket
import sys

from twisted.trial.unittest import SynchronousTestCase

from logio.client.url import PublishURL, parse_url, program_name
from logio.fields import MAX_TOPIC_FIELD


class ParseTests(SynchronousTestCase):
    """
    What each URL form means.
    """

    def test_plainWithEverything(self) -> None:
        """
        logio:// gives a plain TCP address and the topic from the query.
        """
        self.assertEqual(
            parse_url("logio://logs.example.com:7000?app=myapp&proc=web&host=foobar"),
            PublishURL(("logs.example.com", 7000), False, None, "myapp", "web", "foobar"),
        )

    def test_defaults(self) -> None:
        """
        The port defaults to 7701, proc to the program's name, host to the host name.
        """
        url = parse_url("logio://logs.example.com?app=myapp")
        self.assertEqual(url.address, ("logs.example.com", 7701))
        self.assertEqual(url.proc, program_name())
        self.assertEqual(url.host, socket.gethostname())

    def test_emptyProcAndHostMeanDefaults(self) -> None:
        """
        An empty proc or host is the same as leaving it out.
        """
        url = parse_url("logio://h?app=a&proc=&host=")
        self.assertEqual((url.proc, url.host), (program_name(), socket.gethostname()))

    def test_programName(self) -> None:
        """
        The program's name is the base name of argv[0], or "python" for "-c" and "".
        """
        self.patch(sys, "argv", ["/usr/local/bin/myworker", "--flag"])
        self.assertEqual(program_name(), "myworker")
        self.patch(sys, "argv", ["-c"])
        self.assertEqual(program_name(), "python")
        self.patch(sys, "argv", [""])
        self.assertEqual(program_name(), "python")

    def test_tlsWithCA(self) -> None:
        """
        logios:// with ?ca= verifies the server against that CA and sends over TLS.
        """
        url = parse_url("logios://logs.example.com?app=a&ca=/etc/logio/ca.pem")
        self.assertEqual((url.tls, url.ca), (True, "/etc/logio/ca.pem"))
        self.assertEqual(url.address, ("logs.example.com", 7701))

    def test_unixSocket(self) -> None:
        """
        logio+unix:///path publishes to a Unix socket.
        """
        url = parse_url("logio+unix:///run/logio/publish.sock?app=a")
        self.assertEqual(url.address, "/run/logio/publish.sock")
        self.assertEqual(url.describe(), "/run/logio/publish.sock")

    def test_ipv6(self) -> None:
        """
        A bracketed IPv6 address is a host, and is described with brackets.
        """
        url = parse_url("logio://[::1]:7000/?app=a")
        self.assertEqual(url.address, ("::1", 7000))
        self.assertEqual(url.describe(), "[::1]:7000")

    def test_longestFields(self) -> None:
        """
        Topic fields of MAX_TOPIC_FIELD characters are accepted as they are.
        """
        longest = "x" * MAX_TOPIC_FIELD
        url = parse_url(f"logio://h?app={longest}&proc={longest}&host={longest}")
        self.assertEqual((url.app, url.proc, url.host), (longest, longest, longest))

    def test_defaultsMadeAcceptable(self) -> None:
        """
        A program or host name the server would refuse is made acceptable, not
        an error: control characters, whitespace and brackets become "_", a
        long name is cut.
        """
        self.patch(sys, "argv", ["/usr/bin/odd\nname\x7f [1]"])
        self.patch(socket, "gethostname", lambda: "h" * 300)
        url = parse_url("logio://h?app=a")
        self.assertEqual((url.proc, url.host), ("odd_name___1_", "h" * MAX_TOPIC_FIELD))

    def test_percentEncoding(self) -> None:
        """
        Query values are percent-decoded.
        """
        self.assertEqual(parse_url("logio://h?app=my%2Bapp&proc=a%26b").app, "my+app")
        self.assertEqual(parse_url("logio://h?app=x&proc=a%26b").proc, "a&b")


class TokenTests(SynchronousTestCase):
    """
    Where a publisher's token comes from.
    """

    def setUp(self) -> None:
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "LOGIO_TOKEN"})

    def test_userName(self) -> None:
        """
        logio://TOKEN@host sends TOKEN, percent-decoded.
        """
        self.assertEqual(parse_url("logio://t%2Fk@h?app=a").token, "t/k")

    def test_password(self) -> None:
        """
        logio://user:TOKEN@host (the Go client's shape) sends the password.
        """
        url = parse_url("logios://user:s3cret@h:7000?app=a")
        self.assertEqual((url.token, url.address), ("s3cret", ("h", 7000)))

    def test_environment(self) -> None:
        """
        Without a token in the URL, LOGIO_TOKEN is used; the URL's wins.
        """
        os.environ["LOGIO_TOKEN"] = "from-env"
        self.assertEqual(parse_url("logio://h?app=a").token, "from-env")
        self.assertEqual(parse_url("logio://mine@h?app=a").token, "mine")

    def test_none(self) -> None:
        """
        No token anywhere is None.
        """
        self.assertIsNone(parse_url("logio://h?app=a").token)

    def test_notInRepr(self) -> None:
        """
        The repr of a parsed URL never shows the token.
        """
        self.assertNotIn("s3cret", repr(parse_url("logio://s3cret@h?app=a")))


class ErrorTests(SynchronousTestCase):
    """
    Every bad URL is a ValueError that says what is wrong.
    """

    def assertBad(self, url: str, says: str) -> None:
        error = self.assertRaises(ValueError, parse_url, url)
        self.assertIn(says, str(error))

    def test_missingApp(self) -> None:
        """
        A URL without app, or with an empty one, is refused.
        """
        self.assertBad("logio://h:7701", "has no app: add ?app=NAME")
        self.assertBad("logio://h?app=&proc=web", "has no app")

    def test_wrongScheme(self) -> None:
        """
        Only logio://, logios:// and logio+unix:// are publisher URLs.
        """
        self.assertBad("http://h?app=a", "must start with logio://")
        self.assertBad("h:7701?app=a", "must start with logio://")

    def test_badPort(self) -> None:
        """
        A port that is not a number from 1 to 65535 is refused.
        """
        for port in ("abc", "0", "70000"):
            self.assertBad(f"logio://h:{port}?app=a", "bad port")

    def test_noHost(self) -> None:
        """
        A TCP URL needs a host.
        """
        self.assertBad("logio://:7701?app=a", "no host name")

    def test_unknownParameter(self) -> None:
        """
        A misspelt parameter is refused rather than ignored.
        """
        self.assertBad("logio://h?app=a&prc=web", "unknown parameter 'prc'")

    def test_repeatedParameter(self) -> None:
        """
        A parameter given twice is refused.
        """
        self.assertBad("logio://h?app=a&app=b", "gives 'app' more than once")

    def test_caWithoutTLS(self) -> None:
        """
        ?ca= only makes sense with logios://.
        """
        self.assertBad("logio://h?app=a&ca=/x.pem", "only for logios://")

    def test_path(self) -> None:
        """
        A path on a TCP URL is refused.
        """
        self.assertBad("logio://h/app?app=a", "a path ('/app') means nothing")

    def test_errorsHideTheToken(self) -> None:
        """
        A bad URL's message shows the URL without its user name and password.
        """
        error = self.assertRaises(ValueError, parse_url, "logio://user:s3cret@h?app=a&prc=1")
        self.assertIn("'logio://h?app=a&prc=1'", str(error))
        self.assertNotIn("s3cret", str(error))
        self.assertNotIn("user", str(error))

    def test_unixNeedsPath(self) -> None:
        """
        logio+unix:// needs a path and no host.
        """
        self.assertBad("logio+unix://h?app=a", "logio+unix:///path/to/socket")
        self.assertBad("logio+unix://?app=a", "logio+unix:///path/to/socket")

    def test_controlCharacter(self) -> None:
        """
        A topic field with a control character, which the server refuses, is refused.
        """
        self.assertBad("logio://h?app=a%0Ab", "'app' holds the character U+000A")
        self.assertBad("logio://h?app=a&proc=%1b[31m", "'proc' holds the character U+001B")
        self.assertBad("logio://h?app=a&host=a%7Fb", "'host' holds the character U+007F")

    def test_forgingCharacters(self) -> None:
        """
        Whitespace, brackets, line separators and bidi overrides, which the
        server refuses in a topic field, are refused; so is the app "logio".
        """
        self.assertBad("logio://h?app=a+b", "'app' holds a space")
        self.assertBad("logio://h?app=a&proc=web%5D", "'proc' holds ']'")
        self.assertBad("logio://h?app=a&host=%E2%80%A8", "'host' holds the character U+2028")
        self.assertBad("logio://h?app=%E2%80%AEx", "'app' holds the character U+202E")
        self.assertBad("logio://h?app=logio", "the app 'logio' is the server's own")

    def test_tooLong(self) -> None:
        """
        A topic field longer than the server accepts is refused.
        """
        self.assertBad(f"logio://h?app={'a' * 257}", "'app' is longer than 256 characters")
        self.assertBad(f"logio://h?app=a&proc={'p' * 300}", "'proc' is longer than 256 characters")
        self.assertBad(f"logio://h?app=a&host={'h' * 257}", "'host' is longer than 256 characters")
