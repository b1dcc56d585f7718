"""
Tests for L{logio.web.viewer}: the web viewer's files, served with a strict
Content-Security-Policy and without a token.
"""

from __future__ import annotations

import re

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from logio.auth import Tokens
from logio.broker import Broker
from logio.settings import Settings
from logio.web.channel import SubscriberSite
from logio.web.viewer import CSP, FILES
from tests.support.fakes import makeTestSite
from tests.support.http import Client
from tests.support.tokens import tokensFile


class ViewerTests(SynchronousTestCase):
    """
    What C{/ui} serves.
    """

    def site(self, tokens: Tokens | None = None) -> SubscriberSite:
        clock = MemoryReactorClock()
        return makeTestSite(Broker(Settings()), clock, tokens=tokens)

    def get(self, site: SubscriberSite, path: str) -> tuple[bytes, bytes]:
        client = Client(site, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        return client.response()

    def test_files(self) -> None:
        """
        The page, its script and its style, each with its media type, the
        CSP and no-sniff; the page loads only its module script and style,
        from the server.
        """
        site = self.site()
        for path, kind in [
            ("/ui", b"text/html"),
            ("/ui/", b"text/html"),
            ("/ui/app.js", b"text/javascript"),
            ("/ui/text.js", b"text/javascript"),
            ("/ui/topics.js", b"text/javascript"),
            ("/ui/range.js", b"text/javascript"),
            ("/ui/app.css", b"text/css"),
        ]:
            head, body = self.get(site, path)
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), path)
            self.assertIn(b"Content-Type: " + kind, head)
            self.assertIn(b"Content-Security-Policy: " + CSP, head)
            self.assertIn(b"X-Content-Type-Options: nosniff", head)
            self.assertTrue(body, path)
        _, page = self.get(site, "/ui")
        self.assertIn(b'<script type="module" src="/ui/app.js">', page)
        self.assertIn(b'href="/ui/app.css"', page)
        self.assertNotIn(b"http", page.replace(b"http-equiv", b""))
        self.assertNotIn(b"<script>", page)

    def test_strictPolicy(self) -> None:
        """
        Nothing but the server's own script and style, no inline script.
        """
        self.assertIn(b"default-src 'none'", CSP)
        self.assertIn(b"script-src 'self';", CSP)
        self.assertNotIn(b"unsafe", CSP)

    def test_textOnly(self) -> None:
        """
        No script of the page inserts HTML: no innerHTML, outerHTML,
        insertAdjacentHTML, document.write or eval, and no style set as
        text (the CSP would refuse it).
        """
        site = self.site()
        scripts = [name for name, (_, kind) in FILES.items() if kind.startswith(b"text/javascript")]
        self.assertEqual(sorted(scripts), [b"app.js", b"range.js", b"text.js", b"topics.js"])
        for name in scripts:
            _, script = self.get(site, "/ui/" + name.decode())
            for sink in (
                b"innerHTML",
                b"outerHTML",
                b"insertAdjacentHTML",
                b"document.write",
                b"eval(",
                b"cssText",
                b'setAttribute("style"',
            ):
                self.assertNotIn(sink, script, name)

    def test_modulesFromTheServer(self) -> None:
        """
        The modules import one another by relative path only, each one a
        file the server serves.
        """
        site = self.site()
        for name in (b"app.js", b"range.js", b"text.js", b"topics.js"):
            _, script = self.get(site, "/ui/" + name.decode())
            for imported in re.findall(rb'from "([^"]+)"', script):
                self.assertTrue(imported.startswith(b"./"), imported)
                self.assertIn(imported[2:], FILES)

    def test_unknown(self) -> None:
        """
        Other paths under /ui are 404s; other methods 405s.
        """
        head, _ = self.get(self.site(), "/ui/other.js")
        self.assertTrue(head.startswith(b"HTTP/1.1 404 "))
        client = Client(
            self.site(), b"PUT /ui HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertTrue(client.response()[0].startswith(b"HTTP/1.1 405 "))

    def test_noTokenNeeded(self) -> None:
        """
        On a server with --auth the page needs no token (it holds no logs);
        the stream it opens does.
        """
        site = self.site(Tokens(tokensFile(self, "reader-token-0123456 sub .*\n")))
        self.assertTrue(self.get(site, "/ui")[0].startswith(b"HTTP/1.1 200 "))
        self.assertTrue(self.get(site, "/?format=sse")[0].startswith(b"HTTP/1.1 401 "))
