"""
End-to-end tests of who may read and write, against C{twistd -n logio}:
tokens on both ports (plain and TLS, with a CA made here), reloading them
on SIGHUP, the defences of a server without C{--auth}, and output that no
line can forge.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import ssl
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from logio.client.handler import LogioHandler
from tests.support.processes import curl, environment, logio, runCurl, runPython
from tests.support.server import Server
from tests.support.tls import certificates
from tests.support.tokens import tokensFile
from tests.support.waiting import TIMEOUT, waitFor

SHOP = "shop-reader-0123456789abcdef"
EVERY = "every-reader-0123456789abcd"
WRITER = "shop-writer-0123456789abcde"
TOKENS = f"""\
# test tokens
{SHOP}   sub  ^shop$
{EVERY}  sub  .*
{WRITER} pub  shop|shopping
"""


def handlerLogger(testCase: SynchronousTestCase, url: str, name: str = "") -> logging.Logger:
    """
    A logger of its own that sends only to a new L{LogioHandler} for C{url}.
    """
    handler = LogioHandler(url)
    testCase.addCleanup(handler.close)
    logger = logging.getLogger(f"test.{testCase.id()}.{name}")
    logger.propagate = False
    logger.addHandler(handler)
    testCase.addCleanup(logger.removeHandler, handler)
    return logger


def bearer(token: str) -> list[str]:
    return [f"Authorization: Bearer {token}"]


class TokenTests(SynchronousTestCase):
    """
    A server started with C{--auth}.
    """

    def setUp(self) -> None:
        self.path = tokensFile(self, TOKENS)
        self.server = Server(self, "--auth", self.path)

    def url(self, query: str = "", path: str = "/") -> str:
        return f"http://127.0.0.1:{self.server.subscribePort}{path}{'?' + query if query else ''}"

    def publishText(self, app: str, token: str | None, *lines: str) -> bytes:
        """
        Publish text lines; return what the server said before it closed.
        """
        topic = f"app={app}" + (f"&token={token}" if token else "")
        sock = self.server.publish((topic + "\n" + "".join(f"{line}\n" for line in lines)).encode())
        sock.shutdown(socket.SHUT_WR)
        said = b""
        while data := sock.recv(65536):
            said += data
        sock.close()
        return said

    def test_refusals(self) -> None:
        """
        Every refusal, as curl and a publisher see it: 401 without a token
        or with an unknown one, 403 for a token without the role, one error
        line for a publisher; /healthz open.
        """
        self.assertEqual(
            runCurl(self.url("app=shop")),
            (401, "this server needs a token: Authorization: Bearer TOKEN, or ?token=TOKEN"),
        )
        self.assertEqual(
            runCurl("-H", "Authorization: Bearer nope", self.url()), (401, "unknown token")
        )
        self.assertEqual(
            runCurl(self.url(f"token={WRITER}")), (403, "this token may not subscribe")
        )
        self.assertEqual(
            runCurl(self.url(path="/metrics")),
            (401, "this server needs a token: Authorization: Bearer TOKEN, or ?token=TOKEN"),
        )
        self.assertEqual(runCurl(self.url(path="/healthz")), (200, "ok"))
        code, metrics = runCurl("-H", f"Authorization: Bearer {SHOP}", self.url(path="/metrics"))
        self.assertEqual(code, 200)
        self.assertIn("logio_refusals_total", metrics)
        self.assertEqual(
            self.publishText("shop", None, "x"),
            b"error: this server needs a token: send it in the topic "
            b'("token" in seed JSON, token= in a text topic line, logio://TOKEN@host in a URL)\n',
        )
        self.assertEqual(self.publishText("shop", "guess", "x"), b"error: unknown token\n")
        self.assertEqual(
            self.publishText("shop", SHOP, "x"), b"error: this token may not publish\n"
        )
        self.assertEqual(
            self.publishText("billing", WRITER, "x"),
            b"error: this token may not publish to the app 'billing'\n",
        )
        self.server.waitForLog("Refused a subscriber: no token")
        self.server.waitForLog("Refused a publisher: token not allowed")
        for secret in (SHOP, EVERY, WRITER):
            self.assertNotIn(secret, self.server.log())

    def test_restrictedEverywhere(self) -> None:
        """
        A token limited to ^shop$ never sees shopping, even with app=.*: not
        live, not in history, not when an event stream resumes, not in
        /topics; a token for every app sees both.
        """
        mine = self.server.subscribe("app=.*", headers=bearer(SHOP))
        every = self.server.subscribe("app=.*", headers=bearer(EVERY))
        self.server.subscribed(2)
        self.assertEqual(self.publishText("shopping", WRITER, "not for shop readers"), b"")
        self.assertEqual(self.publishText("shop", WRITER, "for shop readers"), b"")
        [line] = mine.lines(1)
        self.assertIn(b"shop[-] 127.0.0.1: for shop readers", line)
        lines = every.lines(2)
        self.assertEqual(
            [line.split(b" ", 1)[1] for line in lines],
            [
                b"shopping[-] 127.0.0.1: not for shop readers",
                b"shop[-] 127.0.0.1: for shop readers",
            ],
        )
        self.assertEqual(self.publishText("shop", WRITER, "marker"), b"")
        self.assertNotIn(b"not for shop readers", mine.readUntil(lambda b: b"marker" in b))
        code, history = runCurl(self.url(f"app=.*&tail=100&follow=0&token={SHOP}"))
        self.assertEqual(code, 200)
        self.assertEqual(
            [line.split(" ", 1)[1] for line in history.splitlines()],
            [
                "shop[-] 127.0.0.1: for shop readers",
                "shop[-] 127.0.0.1: marker",
            ],
        )
        code, events = runCurl(
            "-H",
            f"Authorization: Bearer {SHOP}",
            "-H",
            "Last-Event-ID: " + self.firstId(),
            self.url("app=.*&format=sse&follow=0"),
        )
        self.assertEqual(code, 200)
        logs = [
            json.loads(line[6:])["log"] for line in events.splitlines() if line.startswith("data: ")
        ]
        self.assertEqual(logs, ["for shop readers", "marker"])
        code, topics = runCurl(self.url(f"token={SHOP}", path="/topics"))
        self.assertEqual([topic["app"] for topic in json.loads(topics)], ["shop"])

    def firstId(self) -> str:
        """
        The event id of the first record the server holds (the shopping one).
        """
        code, events = runCurl(self.url(f"app=.*&format=sse&tail=100&follow=0&token={EVERY}"))
        return [line[4:] for line in events.splitlines() if line.startswith("id: ")][0]

    def test_seedTokenAndClient(self) -> None:
        """
        The Python client sends the token of its URL, as user name or as
        password (the Go client's user:pass@ shape); import logio.auto
        with such a LOGIO_URL publishes.
        """
        stream = self.server.subscribe("app=shop", headers=bearer(SHOP))
        self.server.subscribed(1)
        logger = handlerLogger(
            self, f"logio://{WRITER}@127.0.0.1:{self.server.publishPort}?app=shop&proc=py"
        )
        logger.warning("from the handler")
        result = runPython(
            "import logging, logio.auto; logging.getLogger().warning('from logio.auto')",
            LOGIO_URL=f"logio://user:{WRITER}@127.0.0.1:{self.server.publishPort}?app=shop&proc=auto",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn(WRITER.encode(), result.stderr)
        body = stream.readUntil(lambda b: b.count(b"\n") >= 2)
        self.assertIn(b"shop[py] ", body)
        self.assertIn(b"from the handler", body)
        self.assertIn(b"shop[auto] ", body)
        self.assertIn(b"from logio.auto", body)

    def test_sighupReload(self) -> None:
        """
        SIGHUP reloads the tokens without dropping connections: a stream
        whose token is gone ends with a notice, one whose token is unchanged
        goes on, a new token is let in, a publisher whose token lost its app
        is cut off; a bad file keeps the tokens in force.
        """
        kept = self.server.subscribe("app=shop", headers=bearer(EVERY))
        revoked = self.server.subscribe("app=shop", headers=bearer(SHOP))
        self.server.subscribed(2)
        publisher = self.server.publish(f"app=shopping&token={WRITER}\nbefore\n".encode())
        kept.readUntil(lambda b: b"before" in b)
        fresh = "fresh-reader-0123456789abcd"
        with open(self.path, "w") as f:
            f.write(f"{EVERY} sub .*\n{WRITER} pub shop\n{fresh} sub shop\n")
        self.server.process.send_signal(signal.SIGHUP)
        self.server.waitForLog("Reloaded 3 tokens from")
        ended = revoked.readToEnd()
        self.assertIn(b"logio[logio]", ended)
        self.assertIn(b"the tokens were reloaded and this token no longer allows", ended)
        self.assertTrue(revoked.ended)
        self.assertEqual(
            publisher.recv(1000),
            b"error: this token may not publish to the app 'shopping' (the tokens were reloaded)\n",
            self.server.log(),
        )
        self.assertEqual(self.publishText("shop", WRITER, "after"), b"")
        self.assertIn(b"shop[-] 127.0.0.1: after", kept.readUntil(lambda b: b"after" in b))
        self.assertEqual(runCurl(self.url(f"token={fresh}&follow=0"))[0], 200)
        self.assertEqual(runCurl(self.url(f"token={SHOP}&follow=0"))[0], 401)
        with open(self.path, "w") as f:
            f.write(f"{EVERY} sub (\n")
        self.server.process.send_signal(signal.SIGHUP)
        self.server.waitForLog("Kept the tokens in force")
        self.assertEqual(runCurl(self.url(f"token={fresh}&follow=0"))[0], 200)
        self.assertEqual(self.server.process.poll(), None)


class TLSTests(SynchronousTestCase):
    """
    TLS on both ports, with a CA made for the test, and tokens.
    """

    def test_tlsBothPorts(self) -> None:
        """
        curl over https with a Bearer token, logio tail with --token, and
        the Python client with logios://TOKEN@ all work; a plain client on
        the TLS ports is told "TLS server?".
        """
        paths = certificates(self.mktemp(), ["localhost", "127.0.0.1"])
        endpoint = f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}"
        server = Server(
            self, "--auth", tokensFile(self, TOKENS), "--publish", endpoint, "--subscribe", endpoint
        )
        for role, port in (
            ("publishers", server.publishPort),
            ("subscribers", server.subscribePort),
        ):
            self.assertIn(f"Listening for {role} on tcp 127.0.0.1:{port} with TLS", server.log())
        tail = subprocess.Popen(
            logio(
                "tail",
                "--ca",
                paths["ca"],
                "--token",
                SHOP,
                f"https://localhost:{server.subscribePort}/?app=.*",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment(),
        )
        self.addCleanup(tail.wait)
        self.addCleanup(tail.kill)
        streaming = subprocess.Popen(
            [
                curl(),
                "-sN",
                "--cacert",
                paths["ca"],
                "-H",
                f"Authorization: Bearer {EVERY}",
                f"https://localhost:{server.subscribePort}/?app=shop",
            ],
            stdout=subprocess.PIPE,
        )
        self.addCleanup(streaming.wait)
        self.addCleanup(streaming.kill)
        server.subscribed(2)
        handlerLogger(
            self,
            f"logios://{WRITER}@localhost:{server.publishPort}?app=shop&proc=tls&ca={paths['ca']}",
        ).warning("over TLS")
        assert tail.stdout is not None and streaming.stdout is not None
        self.assertIn(b"shop[tls] ", tail.stdout.readline())
        self.assertIn(b"over TLS", streaming.stdout.readline())
        # Plain clients on the TLS ports.
        plainTail = subprocess.run(
            logio("tail", "--no-follow", f"http://127.0.0.1:{server.subscribePort}/"),
            capture_output=True,
            env=environment(),
            timeout=TIMEOUT,
        )
        self.assertEqual(plainTail.returncode, 1)
        self.assertIn(b"TLS server? then use https://", plainTail.stderr)
        reports: list[str] = []
        logger = handlerLogger(
            self, f"logio://{WRITER}@127.0.0.1:{server.publishPort}?app=shop", "plain"
        )
        [plain] = logger.handlers
        assert isinstance(plain, LogioHandler)
        plain.publisher.report = reports.append

        def hinted() -> bool:
            logger.warning("plain")
            return any("TLS server?" in report for report in reports)

        waitFor(hinted, what="the client's TLS hint")


class DefenceTests(SynchronousTestCase):
    """
    A server without C{--auth}: what it does against browsers, and what
    it says about TLS on its plain ports.
    """

    def setUp(self) -> None:
        self.server = Server(self)

    def test_httpOnPublisherPort(self) -> None:
        """
        An HTTP POST to the publisher port (what a web page can make a
        browser send to localhost) gets a 400 naming the port, and
        publishes nothing.
        """
        stream = self.server.subscribe("app=victim")
        self.server.subscribed(1)
        code, body = runCurl(
            "-X",
            "POST",
            "--data-binary",
            "app=victim\nforged\n",
            f"http://127.0.0.1:{self.server.publishPort}/?app=victim",
        )
        self.assertEqual(code, 400)
        self.assertIn(f"This is logio's publisher port ({self.server.publishPort})", body)
        self.server.publish(b"app=victim\nreal\n").close()
        [line] = stream.lines(1)
        self.assertTrue(line.endswith(b"victim[-] 127.0.0.1: real"), line)
        self.server.waitForLog("Refused a publisher: HTTP on the publisher port")

    def test_dnsRebinding(self) -> None:
        """
        A Host header that is not an IP address, localhost or a
        --server-name gets a 403.
        """
        code, body = runCurl(
            "-H", "Host: evil.example:7702", f"http://127.0.0.1:{self.server.subscribePort}/?app=x"
        )
        self.assertEqual(code, 403)
        self.assertIn("Host 'evil.example' is not answered", body)
        self.assertEqual(runCurl(f"http://localhost:{self.server.subscribePort}/topics")[0], 200)

    def test_tlsOnPlainPorts(self) -> None:
        """
        A TLS client on either plain port fails, and the server logs a TLS
        ClientHello on a plain port.
        """
        context = ssl.create_default_context()
        for port in (self.server.publishPort, self.server.subscribePort):
            raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            with self.assertRaises((ssl.SSLError, OSError)):
                context.wrap_socket(raw, server_hostname="localhost")
            raw.close()
        self.server.waitForLog("Refused a publisher: TLS on a plain port")
        self.server.waitForLog("Refused a subscriber: TLS on a plain HTTP port")
        self.assertIn("a TLS ClientHello on a plain HTTP port", self.server.log())

    def test_forgeryShownEscaped(self) -> None:
        """
        Escapes, carriage returns, line separators and bidi overrides reach
        a text subscriber as visible escapes and a JSON subscriber exactly;
        a forged prefix in a topic field and the app "logio" are refused.
        """
        text = self.server.subscribe("app=forge")
        asJSON = self.server.subscribe("app=forge&format=json")
        self.server.subscribed(2)
        raw = "\x1b[2Jcleared\rlogio[logio] h: 5 lines dropped\u2028fake\u202eright"
        record = json.dumps({"raw": raw + "\n"}).encode()
        self.server.publish(b'{"app":"forge","proc":"web","host":"h"}' + record).close()
        [line] = text.lines(1)
        self.assertTrue(
            line.endswith(
                b"forge[web] h: \\u001b[2Jcleared\\u000dlogio[logio] h: 5 lines dropped"
                b"\\u2028fake\\u202eright"
            ),
            line,
        )
        [value] = asJSON.lines(1)
        self.assertEqual(json.loads(value)["log"], raw)
        for topic, field in [
            (b'{"app":"forge","proc":"web] db-1: payment OK [x"}', b"'proc' holds ']'"),
            (b'{"app":"logio"}', b"the app 'logio' is the server's own"),
        ]:
            sock = self.server.publish(topic + record)
            self.assertIn(field, sock.recv(1000))
            sock.close()
