"""
Tests for L{logio.web.gate}: tokens on the subscriber port, and the Host check
of a server without C{--auth}.
"""

from __future__ import annotations

import base64
import json

from twisted.internet.address import UNIXAddress
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from logio.auth import Tokens
from logio.broker import Broker
from logio.settings import Settings
from logio.topic import Topic
from logio.web.channel import accessLogLine
from tests.support.fakes import makeTestSite, publish
from tests.support.http import Client, dechunk, sseEvents
from tests.support.tokens import tokensFile

TS = "2016-12-06T22:14:21.448"
START = 1700000000000
SHOP = Topic("shop", "web", "h1")
SHOPPING = Topic("shopping", "web", "h1")
READER = "reader-token-0123456789"
ALL = "all-token-0123456789ab"
WRITER = "writer-token-0123456789"
TOKENS = f"{READER} sub ^shop$\n{ALL} both .*\n{WRITER} pub .*\n"


def request(path: str, *headers: str, host: str = "localhost") -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class GateTestCase(SynchronousTestCase):
    """
    A subscriber port with a gate, over a fake clock.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        settings = Settings(history=100, historyBytes=1 << 20, serverNames=("logs.example.com",))
        self.broker = Broker(settings, self.clock, START)
        self.tokensPath = tokensFile(self, TOKENS)
        self.tokens = self.makeTokens()
        self.site = makeTestSite(self.broker, self.clock, settings, self.tokens)

    def makeTokens(self) -> Tokens | None:
        return Tokens(self.tokensPath)

    def get(self, path: str, *headers: str, host: str = "localhost") -> Client:
        return Client(self.site, request(path, *headers, host=host))

    def status(self, client: Client) -> int:
        return int(client.response()[0].split(b" ", 2)[1])

    def text(self, client: Client) -> str:
        head, body = client.response()
        return (dechunk(body)[0] if b"chunked" in head else body).decode()


class TokenTests(GateTestCase):
    """
    With C{--auth}, who gets in and what they see.
    """

    def test_noToken(self) -> None:
        """
        No token is a 401 with a challenge and a body saying how to send one.
        """
        for path in ("/?app=shop", "/metrics", "/topics", "/any/path"):
            client = self.get(path)
            self.assertEqual(self.status(client), 401, path)
            self.assertIn(b'WWW-Authenticate: Bearer realm="logio"', client.response()[0])
            self.assertIn("Authorization: Bearer TOKEN, or ?token=TOKEN", self.text(client))
        self.assertEqual(self.broker.subscriberCount(), 0)

    def test_unknownToken(self) -> None:
        """
        A token the file does not hold is a 401.
        """
        client = self.get("/?app=shop", "Authorization: Bearer guess")
        self.assertEqual((self.status(client), self.text(client)), (401, "unknown token\n"))

    def test_wrongRole(self) -> None:
        """
        A token that may only publish is a 403 on the subscriber's paths.
        """
        for path in ("/?app=shop", "/metrics", "/topics"):
            client = self.get(path, f"Authorization: Bearer {WRITER}")
            self.assertEqual(self.status(client), 403)
            self.assertEqual(self.text(client), "this token may not subscribe\n")

    def test_healthzOpen(self) -> None:
        """
        C{/healthz} needs no token.
        """
        client = self.get("/healthz")
        self.assertEqual((self.status(client), self.text(client)), (200, "ok\n"))

    def test_waysToPresent(self) -> None:
        """
        A token is taken from Bearer, from Basic (as the password, or the
        user name alone) and from C{?token=}.
        """
        for path, headers in [
            ("/?app=shop", [f"Authorization: Bearer {READER}"]),
            ("/?app=shop", [f"authorization: bearer  {READER} "]),
            (
                "/?app=shop",
                ["Authorization: Basic " + base64.b64encode(f"x:{READER}".encode()).decode()],
            ),
            (
                "/?app=shop",
                ["Authorization: Basic " + base64.b64encode(f"{READER}:".encode()).decode()],
            ),
            (f"/?app=shop&token={READER}", []),
        ]:
            client = self.get(path, *headers)
            self.assertEqual(self.status(client), 200, headers)
            client.channel.connectionLost(Exception("done"))

    def test_noPathSegment(self) -> None:
        """
        A request target without a path segment is gated too.
        """
        client = Client(self.site, b"GET ?app=shop HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(self.status(client), 401)

    def test_liveRestricted(self) -> None:
        """
        A token limited to ^shop$ never receives shopping, even asking for .*.
        """
        client = self.get(f"/?app=.*&token={READER}")
        publish(self.broker, SHOPPING, [(TS, "not yours", None)])
        publish(self.broker, SHOP, [(TS, "yours", None)])
        self.assertEqual(self.text(client), f"{TS} shop[web] h1: yours\n")
        everything = self.get(f"/?app=.*&token={ALL}")
        publish(self.broker, SHOPPING, [(TS, "for all", None)])
        self.assertIn("shopping[web] h1: for all", self.text(everything))
        self.assertNotIn("for all", self.text(client))

    def test_historyRestricted(self) -> None:
        """
        Nor in history (?tail=).
        """
        publish(self.broker, SHOP, [(TS, "one", None)])
        publish(self.broker, SHOPPING, [(TS, "two", None)])
        client = self.get(f"/?app=shop&tail=10&follow=0&token={READER}")
        self.assertEqual(self.text(client), f"{TS} shop[web] h1: one\n")

    def test_sseResumeRestricted(self) -> None:
        """
        Nor when an event stream resumes after an id.
        """
        publish(self.broker, SHOP, [(TS, "zero", None)])
        publish(self.broker, SHOPPING, [(TS, "one", None)])
        publish(self.broker, SHOP, [(TS, "two", None)])
        client = self.get(f"/?app=.*&format=sse&token={READER}", f"Last-Event-ID: {START}-1")
        events = sseEvents(dechunk(client.response()[1])[0])
        self.assertEqual([json.loads(e["data"])["log"] for e in events], ["two"])

    def test_topicsRestricted(self) -> None:
        """
        C{/topics} lists only the token's apps.
        """
        publish(self.broker, SHOP, [(TS, "a", None)])
        publish(self.broker, SHOPPING, [(TS, "b", None)])
        mine = json.loads(self.text(self.get(f"/topics?token={READER}")))
        self.assertEqual([topic["app"] for topic in mine], ["shop"])
        every = json.loads(self.text(self.get(f"/topics?token={ALL}")))
        self.assertEqual([topic["app"] for topic in every], ["shop", "shopping"])

    def test_metricsWithToken(self) -> None:
        """
        C{/metrics} answers a token that may subscribe.
        """
        client = self.get("/metrics", f"Authorization: Bearer {READER}")
        self.assertEqual(self.status(client), 200)
        self.assertIn("logio_subscribers", self.text(client))

    def test_tokenNeverLogged(self) -> None:
        """
        Neither the refusal log, the subscription log nor the access log
        line shows a token.
        """
        with capturedLogs() as events:
            self.get(f"/?app=shop&token={READER}")
            self.get(f"/?token={WRITER}&app=shop")
            self.get("/?app=shop", "Authorization: Bearer guess-0123456789")
        text = "\n".join(formatEvent(event) for event in events)
        self.assertIn("subscribed to 'app=shop&token=...'", text)
        self.assertIn("this token may not subscribe", text)
        for secret in (READER, WRITER, "guess-0123456789"):
            self.assertNotIn(secret, text)
        client = self.get(f"/?app=shop&token={READER}")
        [pending] = client.channel.requests
        line = accessLogLine("[now]", pending)
        self.assertIn('"GET /?app=shop&token=... HTTP/1.1"', line)
        self.assertEqual(pending.uri, f"/?app=shop&token={READER}".encode())


class ReloadTests(GateTestCase):
    """
    Reloading the tokens ends the subscriptions they no longer allow.
    """

    def rewrite(self, text: str) -> None:
        with open(self.tokensPath, "w") as f:
            f.write(text)
        self.assertTrue(self.tokens is not None and self.tokens.reload())

    def test_revokedEnds(self) -> None:
        """
        A subscription whose token is gone gets a notice and its response
        ends; one whose token is unchanged streams on.
        """
        revoked = self.get(f"/?app=shop&token={READER}")
        kept = self.get(f"/?app=shop&token={ALL}")
        self.rewrite(f"{ALL} both .*\n")
        body, ended = dechunk(revoked.response()[1])
        self.assertTrue(ended)
        self.assertIn("logio[logio]", body.decode())
        self.assertIn("the tokens were reloaded and this token no longer allows", body.decode())
        self.assertEqual(self.broker.subscriberCount(), 1)
        publish(self.broker, SHOP, [(TS, "still", None)])
        self.assertIn("shop[web] h1: still", self.text(kept))
        self.assertFalse(kept.transport.disconnecting)

    def test_changedEnds(self) -> None:
        """
        So does one whose token now allows other apps.
        """
        changed = self.get(f"/?app=shop&token={READER}")
        self.rewrite(f"{READER} sub shop|billing\n")
        self.assertTrue(dechunk(changed.response()[1])[1])
        again = self.get(f"/?app=.*&token={READER}")
        publish(self.broker, Topic("billing", "web", "h1"), [(TS, "now yours", None)])
        self.assertIn("billing[web] h1: now yours", self.text(again))

    def test_newTokenLetIn(self) -> None:
        """
        A token added to the file is let in after the reload, not before.
        """
        fresh = "fresh-token-0123456789"
        self.assertEqual(self.status(self.get(f"/?token={fresh}")), 401)
        self.rewrite(TOKENS + f"{fresh} sub .*\n")
        self.assertEqual(self.status(self.get(f"/?token={fresh}")), 200)


class HostTests(GateTestCase):
    """
    Without C{--auth}, only requests for this host are answered.
    """

    def makeTokens(self) -> Tokens | None:
        return None

    def test_accepted(self) -> None:
        """
        IP literals, localhost and names under it, and a --server-name are
        answered, with or without a port.
        """
        for host in (
            "127.0.0.1",
            "127.0.0.1:7702",
            "[::1]:7702",
            "[::1]",
            "10.1.2.3",
            "localhost",
            "LOCALHOST:7702",
            "logio.localhost",
            "logs.example.com",
            "logs.example.com.:80",
        ):
            client = self.get("/?app=x", host=host)
            self.assertEqual(self.status(client), 200, host)
            client.channel.connectionLost(Exception("done"))

    def test_refused(self) -> None:
        """
        Any other name is a 403 saying why, whatever the path.
        """
        for host in ("evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "example.com"):
            for path in ("/?app=x", "/topics", "/healthz"):
                client = self.get(path, host=host)
                self.assertEqual(self.status(client), 403, host)
                self.assertIn("defence against DNS rebinding", self.text(client))
        self.assertEqual(self.broker.subscriberCount(), 0)

    def test_noHostHeader(self) -> None:
        """
        A request without a Host header (HTTP/1.0 tools; no browser) is answered.
        """
        client = Client(self.site, b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(self.status(client), 200)

    def test_unixSocket(self) -> None:
        """
        A request over a UNIX socket is not checked: no browser reaches one.
        """
        transport = StringTransport(hostAddress=UNIXAddress("/run/logio.sock"))
        client = Client(self.site, request("/healthz", host="anything"), transport)
        self.assertEqual(self.status(client), 200)

    def test_tokenIgnored(self) -> None:
        """
        Without --auth a token is accepted and means nothing.
        """
        client = self.get("/?app=x&token=whatever")
        self.assertEqual(self.status(client), 200)
