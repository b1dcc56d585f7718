"""
End-to-end tests of the web viewer at C{/ui}, in a real headless Chromium
(Debian's C{chromium} and C{chromium-driver}, driven with selenium), against
C{twistd -n logio}.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import parse_qs, quote, urlsplit

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.support.server import Server
from tests.support.waiting import TIMEOUT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def browser(testCase: SynchronousTestCase) -> Any:
    """
    A headless Chromium, quit at the end of the test.  Without one the
    test is skipped, unless C{CI} is set: then it fails.
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if os.environ.get("CI"):
            raise
        raise SkipTest("selenium is not installed") from None
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        if os.environ.get("CI"):
            raise AssertionError(f"no browser: {CHROMIUM} and {DRIVER} are needed")
        raise SkipTest("chromium and chromium-driver are not installed")
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    testCase.addCleanup(driver.quit)
    return driver


def waitUntil(
    driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = TIMEOUT
) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}") from None


def texts(driver: Any) -> list[str]:
    """
    The log text of every line the page shows, in order.
    """
    return list(
        driver.execute_script(
            "return Array.from(document.querySelectorAll('#log .line .text'), n => n.textContent)"
        )
    )


def stamp(when: datetime) -> str:
    """
    An RFC 3339 time in UTC with milliseconds, as the server shows times.
    """
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def rgb(colour: str) -> tuple[int, ...]:
    """
    The red, green and blue of a computed CSS colour, C{rgb(r, g, b)}.
    """
    match = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, [\d.]+)?\)", colour)
    assert match is not None, f"not an rgb() colour: {colour!r}"
    return tuple(int(part) for part in match.groups())


def reddish(colour: str) -> bool:
    """
    Whether a computed colour is mostly red.
    """
    r, g, b = rgb(colour)
    return r > g + 60 and r > b + 60


class Proxy:
    """
    A TCP proxy in front of the server that can cut every connection through
    it at once, as a network drop or a server going away looks to a browser.
    """

    def __init__(self, testCase: SynchronousTestCase, port: int) -> None:
        self._upstream = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()
        testCase.addCleanup(self.close)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._upstream))
            with self._lock:
                self._pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self) -> None:
        """
        Cut every connection open now.
        """
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()
        self.drop()


class ViewerTests(SynchronousTestCase):
    """
    The page, as a person uses it.
    """

    def setUp(self) -> None:
        self.server = Server(self)
        self.driver = browser(self)

    def open(self, query: str = "", port: int = 0) -> None:
        self.driver.get(f"http://127.0.0.1:{port or self.server.subscribePort}/ui{query}")

    def publish(self, app: str, *lines: str, proc: str = "web", host: str = "h1") -> None:
        data = f"app={app}&proc={proc}&host={host}\n" + "".join(f"{line}\n" for line in lines)
        self.server.publish(data.encode()).close()

    def publishRecords(self, *records: dict[str, str]) -> None:
        """
        Publish C{records} as NDJSON with a POST to C{/publish}.
        """
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.server.subscribePort, timeout=TIMEOUT
        )
        self.addCleanup(connection.close)
        body = "".join(json.dumps(record) + "\n" for record in records).encode()
        connection.request(
            "POST", "/publish", body, headers={"Content-Type": "application/x-ndjson"}
        )
        answer = connection.getresponse()
        self.assertEqual(
            (answer.status, json.loads(answer.read())["accepted"]), (200, len(records))
        )

    def script(self, code: str) -> Any:
        return self.driver.execute_script(code)

    def waitForTexts(self, expected: list[str]) -> None:
        waitUntil(self.driver, lambda d: texts(d) == expected, f"the lines {expected[-3:]}…")

    def screenshot(self, name: str) -> str:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, f"{name}.png")
        self.driver.save_screenshot(path)
        return path

    def test_historyThenLive(self) -> None:
        """
        On load the page shows the history, then the live lines, in order,
        each with its timestamp and app[proc] host.
        """
        self.publish("shop", "one", "two", "three")
        self.open("?app=shop")
        self.waitForTexts(["one", "two", "three"])
        self.publish("shop", "four", "five")
        self.waitForTexts(["one", "two", "three", "four", "five"])
        topics = self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#log .topic'), n => n.textContent)"
        )
        self.assertEqual(topics, ["shop[web]"] * 5)
        self.assertEqual(self.driver.find_element("id", "state").text, "live")
        self.screenshot("history-then-live")

    def test_filters(self) -> None:
        """
        A filter applied with Enter changes what is shown and goes into the
        page's URL, so reloading keeps it.
        """
        self.publish("alpha", "from alpha")
        self.publish("beta", "from beta")
        self.open()
        self.waitForTexts(["from alpha", "from beta"])
        field = self.driver.find_element("name", "app")
        field.send_keys("^beta$\n")
        self.waitForTexts(["from beta"])
        self.assertIn("app=%5Ebeta%24", self.driver.current_url)
        self.driver.refresh()
        self.waitForTexts(["from beta"])
        self.assertEqual(self.driver.find_element("name", "app").get_attribute("value"), "^beta$")

    def test_badRegex(self) -> None:
        """
        A pattern the server refuses shows the server's 400 message.
        """
        self.open("?log=%28unclosed")
        error = waitUntil(
            self.driver,
            lambda d: (
                d.find_element("id", "error").is_displayed() and d.find_element("id", "error")
            ),
            "the error",
        )
        self.assertIn("400", error.text)
        self.assertIn("bad regular expression for 'log'", error.text)

    def test_pause(self) -> None:
        """
        While paused, new lines are counted and kept; resume shows them.
        """
        self.publish("p", "before")
        self.open("?app=p")
        self.waitForTexts(["before"])
        self.driver.find_element("id", "pause").click()
        self.publish("p", "a", "b", "c")
        waitUntil(self.driver, lambda d: d.find_element("id", "pending").text == "3 new", "3 new")
        self.assertEqual(texts(self.driver), ["before"])
        self.driver.find_element("id", "pause").click()
        self.waitForTexts(["before", "a", "b", "c"])
        self.assertEqual(self.driver.find_element("id", "pending").text, "")

    def test_followAndJumpToLive(self) -> None:
        """
        The view follows the newest line until the user scrolls up; then it
        stays put and offers "Jump to live", which follows again.
        """
        self.publish("s", *[f"line {n}" for n in range(300)])
        self.open("?app=s")
        self.waitForTexts([f"line {n}" for n in range(100, 300)])
        atBottom = "const v = document.getElementById('log'); return v.scrollHeight - v.scrollTop - v.clientHeight < 4"
        waitUntil(self.driver, lambda d: d.execute_script(atBottom), "the view at the newest line")
        self.driver.execute_script("document.getElementById('log').scrollTop = 300")
        live = waitUntil(
            self.driver,
            lambda d: d.find_element("id", "live").is_displayed() and d.find_element("id", "live"),
            "Jump to live",
        )
        self.publish("s", "newer")
        self.waitForTexts([f"line {n}" for n in range(100, 300)] + ["newer"])
        self.assertEqual(
            self.driver.execute_script("return document.getElementById('log').scrollTop"), 300
        )
        live.click()
        waitUntil(self.driver, lambda d: d.execute_script(atBottom), "the view at the newest line")
        self.assertFalse(live.is_displayed())

    def test_resumedAfterDrop(self) -> None:
        """
        When the stream's connection is cut, the page says it is
        reconnecting, reconnects and resumes after the last line it had:
        nothing lost, nothing twice.
        """
        proxy = Proxy(self, self.server.subscribePort)
        self.publish("r", *[f"line {n}" for n in range(5)])
        self.open("?app=r", port=proxy.port)
        self.waitForTexts([f"line {n}" for n in range(5)])
        proxy.drop()
        waitUntil(
            self.driver,
            lambda d: d.find_element("id", "state").text == "reconnecting…",
            "the page to say it is reconnecting",
        )
        self.publish("r", *[f"line {n}" for n in range(5, 10)])
        self.waitForTexts([f"line {n}" for n in range(10)])
        self.publish("r", "line 10")
        self.waitForTexts([f"line {n}" for n in range(11)])

    def test_htmlIsText(self) -> None:
        """
        A log line of HTML is shown as its text and runs nothing.
        """
        lines = [
            "<img src=x onerror=\"document.title='pwned'\">",
            "<script>document.title='pwned'</script>",
            "<b>bold?</b>",
        ]
        self.publish("x", *lines)
        self.open("?app=x")
        self.waitForTexts(lines)
        self.assertEqual(self.driver.title, "logio")
        self.assertEqual(
            self.driver.execute_script(
                "return document.querySelectorAll('#log img, #log script, #log b').length"
            ),
            0,
        )

    def marks(self) -> list[str]:
        """
        The text of every highlight the page shows.
        """
        return list(
            self.driver.execute_script(
                "return Array.from(document.querySelectorAll('#log mark'), n => n.textContent)"
            )
        )

    def test_backtrackingPatternNotHighlighted(self) -> None:
        """
        A C{log} pattern the browser's backtracking regular expressions
        would take exponential time on, C{(a+)+$}, with a line made to
        defeat it: the page shows the line at once and stays responsive,
        unhighlighted; a literal pattern is still highlighted.
        """
        from selenium.common.exceptions import TimeoutException

        line = "a" * 29 + "b a"
        self.publish("bt", line, "after")
        self.open("?app=bt&log=%28a%2B%29%2B%24")
        self.driver.set_script_timeout(5)
        began = time.monotonic()
        try:
            self.waitForTexts([line])
            self.assertEqual(self.driver.execute_async_script("arguments[0](1 + 1)"), 2)
        except TimeoutException:
            self.fail("the page froze on the pattern")
        self.assertLess(time.monotonic() - began, TIMEOUT)
        self.assertEqual(self.marks(), [])
        self.open("?app=bt&log=after%7Cb%5C%20a")
        self.waitForTexts([line, "after"])
        self.assertEqual(self.marks(), ["b a", "after"])

    def test_controlsShownEscaped(self) -> None:
        """
        Bidi overrides and other controls in a line are shown as the text
        output shows them, C{\\u202e}, so they cannot reorder what is around
        them; the rest of the line is as it came.
        """
        self.publish("bidi", "\u202eevil", "tab\there \u0007bell \u2066iso")
        self.open("?app=bidi")
        self.waitForTexts(["\\u202eevil", "tab\there \\u0007bell \\u2066iso"])
        self.screenshot("controls-escaped")

    def test_keepsUp(self) -> None:
        """
        At 2,000 lines/s for 5 s every line arrives on the page, in order;
        the page then holds its most and loads no earlier lines.
        """
        self.open("?app=fast")
        waitUntil(self.driver, lambda d: d.find_element("id", "state").text == "live", "live")
        sock = self.server.publish(b"app=fast&proc=web&host=h1\n")
        started = time.monotonic()
        for tick in range(50):
            sock.sendall("".join(f"seq {tick * 200 + n}\n" for n in range(200)).encode())
            delay = started + (tick + 1) * 0.1 - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the publisher's pace, not a wait for the page
        sock.close()
        waitUntil(
            self.driver,
            lambda d: (
                d.execute_script("return document.querySelectorAll('#log .line').length") >= 10000
            ),
            "10,000 lines on the page",
            timeout=TIMEOUT * 2,
        )
        shown = texts(self.driver)
        self.assertEqual(shown, [f"seq {n}" for n in range(10000)])
        self.screenshot("keeps-up")
        self.script("document.getElementById('log').scrollTop = 0")
        waitUntil(
            self.driver,
            lambda d: d.find_element("id", "earlier").text.startswith(
                "the page keeps 10,000 lines"
            ),
            "the page to say it loads no more",
        )
        self.assertEqual(texts(self.driver), shown)

    def spans(self) -> list[dict[str, str]]:
        """
        Each styled span of the lines' text: its text, classes and the
        computed style that shows it.
        """
        return list(
            self.script(
                """return Array.from(document.querySelectorAll('#log .text .sgr'), n => {
                  const style = getComputedStyle(n);
                  return {text: n.textContent, classes: n.className, color: style.color,
                    background: style.backgroundColor, weight: style.fontWeight,
                    opacity: style.opacity, italic: style.fontStyle,
                    underline: style.textDecorationLine};
                })"""
            )
        )

    def test_sgrColours(self) -> None:
        """
        SGR sequences are shown as styled spans: the 16 colours, bold, dim,
        italic, underline, 256 colours, true colour and backgrounds; the
        sequences themselves are not shown.
        """
        self.publish(
            "ansi",
            "\x1b[31mred\x1b[0m plain",
            "\x1b[1mbold\x1b[22m \x1b[2mdim\x1b[0m \x1b[3;4mstyled\x1b[23;24m",
            "\x1b[38;5;196mindexed\x1b[39m \x1b[38;2;0;90;255mtrue\x1b[m",
            "\x1b[41;97m FAIL \x1b[49;39m after",
        )
        self.open("?app=ansi")
        self.waitForTexts(["red plain", "bold dim styled", "indexed true", " FAIL  after"])
        spans = {span["text"]: span for span in self.spans()}
        self.assertEqual(
            sorted(spans), [" FAIL ", "bold", "dim", "indexed", "red", "styled", "true"]
        )
        self.assertTrue(reddish(spans["red"]["color"]), spans["red"])
        self.assertGreaterEqual(int(spans["bold"]["weight"]), 700)
        self.assertLess(float(spans["dim"]["opacity"]), 1)
        self.assertEqual(spans["styled"]["italic"], "italic")
        self.assertEqual(spans["styled"]["underline"], "underline")
        self.assertTrue(reddish(spans["indexed"]["color"]), spans["indexed"])
        r, g, b = rgb(spans["true"]["color"])
        self.assertGreater(b, r + 60)
        self.assertTrue(reddish(spans[" FAIL "]["background"]), spans[" FAIL "])
        self.assertGreater(min(rgb(spans[" FAIL "]["color"])), 200)
        plain = self.script(
            "return Array.from(document.querySelectorAll('#log .text')).map("
            "n => getComputedStyle(n).color)"
        )
        self.assertNotEqual(plain[0], spans["red"]["color"])
        self.screenshot("sgr-colours")

    def test_otherEscapesShownEscaped(self) -> None:
        """
        Escape sequences other than SGR, and control characters, are shown
        escaped as before; an SGR sequence cannot smuggle in HTML, and log
        text with tags creates no elements.
        """
        self.publish(
            "esc",
            "clear\x1b[2J home\x1b[H bell\x07 title\x1b]0;x\x07",
            "\x1b[31m<img src=x onerror=\"document.title='pwned'\">\x1b[0m<b>b</b>",
            "\x1b[31;1\x1b[0m half \x1b[999m odd\x1b[38;5m",
        )
        self.open("?app=esc")
        self.waitForTexts(
            [
                "clear\\u001b[2J home\\u001b[H bell\\u0007 title\\u001b]0;x\\u0007",
                "<img src=x onerror=\"document.title='pwned'\"><b>b</b>",
                "\\u001b[31;1 half  odd",
            ]
        )
        self.assertEqual(self.driver.title, "logio")
        self.assertEqual(
            self.script("return document.querySelectorAll('#log img, #log b').length"), 0
        )
        self.assertEqual(
            [span["text"] for span in self.spans()],
            ["<img src=x onerror=\"document.title='pwned'\">"],
        )

    def test_highlightInColours(self) -> None:
        """
        The search highlight marks matches inside coloured text too, and the
        colour stays.
        """
        self.publish("hl", "\x1b[31merror budget\x1b[0m spent", "request \x1b[32mok\x1b[0m")
        self.open("?app=hl&log=error%7Crequest")
        self.waitForTexts(["error budget spent", "request ok"])
        self.assertEqual(self.marks(), ["error", "request"])
        inRed = self.script(
            "const m = document.querySelector('#log mark');"
            "return [m.parentElement.classList.contains('sgr'), getComputedStyle(m).color]"
        )
        self.assertTrue(inRed[0])
        self.assertTrue(reddish(inRed[1]), inRed)

    def panel(self) -> list[tuple[str, str]]:
        """
        The apps the topics panel lists, each with the count it shows.
        """
        return [
            (name, count)
            for name, count in self.script(
                "return Array.from(document.querySelectorAll('#topics .app-row'),"
                " n => [n.querySelector('.name').textContent, n.querySelector('.n').textContent])"
            )
        ]

    def rows(self, selector: str) -> list[list[str]]:
        """
        The texts of the parts of each row of the panel that C{selector}
        picks.
        """
        return list(
            self.script(
                f"return Array.from(document.querySelectorAll('#topics {selector}'),"
                " n => Array.from(n.querySelectorAll('span:not(.swatch)'), p => p.textContent))"
            )
        )

    def click(self, selector: str) -> None:
        """
        Click what C{selector} picks, found and clicked at once: the panel
        rebuilds its rows when /topics changes.
        """
        self.script(f"document.querySelector({json.dumps(selector)}).click()")

    def test_topicsPanel(self) -> None:
        """
        The panel lists each app with its procs and hosts and their record
        counts, refreshed as records come; a click on an app, a proc or a
        host filters the stream to it, and a click on "All topics" (or on
        the chosen one again) shows everything.
        """
        self.publish("shop", "s1", "s2", "s3")
        self.publish("billing", "b1", "b2", proc="worker", host="h2")
        self.publish("auth", "a1", proc="worker", host="h3")
        self.open()
        waitUntil(
            self.driver,
            lambda d: self.panel() == [("auth", "1"), ("billing", "2"), ("shop", "3")],
            "the three apps in the panel",
        )
        self.assertEqual(
            self.rows(".proc-row"),
            [["worker", "h3", "1"], ["worker", "h2", "2"], ["web", "h1", "3"]],
        )
        self.assertEqual(self.rows(".host-row"), [["h1", "3"], ["h2", "2"], ["h3", "1"]])
        self.publish("shop", "s4", "s5")
        waitUntil(
            self.driver,
            lambda d: self.panel() == [("auth", "1"), ("billing", "2"), ("shop", "5")],
            "the panel to count the new records",
        )

        self.click("#topics .app-row[data-app='^billing$']")
        self.waitForTexts(["b1", "b2"])
        self.assertIn("app=%5Ebilling%24", self.driver.current_url)
        self.assertEqual(
            self.driver.find_element("name", "app").get_attribute("value"), "^billing$"
        )
        self.assertEqual(
            self.script("return document.querySelector('#count').textContent"), "2 lines"
        )
        waitUntil(
            self.driver,
            lambda d: self.rows(".active") == [["billing", "2"]],
            "billing marked as chosen",
        )
        self.publish("shop", "s6")
        self.publish("billing", "b3", proc="worker", host="h2")
        self.waitForTexts(["b1", "b2", "b3"])

        self.click("#topics .host-row[data-host='^h1$']")
        self.waitForTexts(["s1", "s2", "s3", "s4", "s5", "s6"])
        self.assertEqual(self.driver.find_element("name", "app").get_attribute("value"), "")
        self.assertEqual(self.driver.find_element("name", "host").get_attribute("value"), "^h1$")

        self.click("#topics .proc-row[data-proc='^worker$'][data-app='^auth$']")
        self.waitForTexts(["a1"])
        self.assertEqual(
            self.driver.find_element("name", "proc").get_attribute("value"), "^worker$"
        )
        self.assertEqual(self.driver.find_element("name", "host").get_attribute("value"), "")
        self.click("#topics .proc-row.active")
        waitUntil(self.driver, lambda d: len(texts(d)) == 10, "every line again")
        self.assertEqual(self.driver.find_element("name", "app").get_attribute("value"), "")
        self.click("#topics .app-row[data-app='^shop$']")
        self.waitForTexts(["s1", "s2", "s3", "s4", "s5", "s6"])
        self.click("#topics .all")
        waitUntil(self.driver, lambda d: len(texts(d)) == 10, "every line again")
        self.screenshot("topics-panel")

    def test_distinctColours(self) -> None:
        """
        Apps get colours far apart, the same on their lines and in the
        panel, and the same again after a reload.
        """
        apps = ["shop", "billing", "auth", "search"]
        for app in apps:
            self.publish(app, f"from {app}", proc="worker")
        self.open()
        self.waitForTexts([f"from {app}" for app in apps])
        waitUntil(self.driver, lambda d: len(self.panel()) == 4, "four apps in the panel")
        colourScript = """
            const colours = {};
            for (const n of document.querySelectorAll('#log .topic'))
              colours[n.textContent.split('[')[0]] = getComputedStyle(n).color;
            const panel = {};
            for (const n of document.querySelectorAll('#topics .app-row'))
              panel[n.querySelector('.name').textContent] =
                getComputedStyle(n.querySelector('.swatch')).backgroundColor;
            return [colours, panel];"""
        lines, panel = self.script(colourScript)
        self.assertEqual(lines, panel)
        for i, first in enumerate(apps):
            for second in apps[i + 1 :]:
                distance = sum(
                    abs(a - b) for a, b in zip(rgb(lines[first]), rgb(lines[second]), strict=True)
                )
                self.assertGreater(distance, 80, f"{first} and {second}: {lines}")
        self.driver.refresh()
        self.waitForTexts([f"from {app}" for app in apps])
        self.assertEqual(self.script(colourScript)[0], lines)

    def test_countAfterReplay(self) -> None:
        """
        The footer counts the lines the history replay brought as soon as
        they are shown, then the live ones; new filters count afresh.
        """
        self.publish("c", "one", "two", "three")
        self.publish("d", "other")
        self.open("?app=c")
        self.waitForTexts(["one", "two", "three"])
        self.assertEqual(
            self.script("return document.getElementById('count').textContent"), "3 lines"
        )
        self.publish("c", "four")
        self.waitForTexts(["one", "two", "three", "four"])
        self.assertEqual(
            self.script("return document.getElementById('count').textContent"), "4 lines"
        )
        self.driver.find_element("name", "app").clear()
        self.driver.find_element("name", "app").send_keys("^d$\n")
        self.waitForTexts(["other"])
        self.assertEqual(
            self.script("return document.getElementById('count').textContent"), "1 line"
        )

    def test_levels(self) -> None:
        """
        Lines are marked by level (errors and fatal ones red, warnings
        amber, debug and trace faded); the level selector subscribes to a
        level and worse, and goes into the page's URL; a level the server
        knows by another name stays chosen.
        """
        levels = ["trace", "debug", "info", "notice", "warn", "error", "fatal"]
        self.publishRecords(
            *({"app": "lv", "log": f"at {level}", "level": level} for level in levels),
            {"app": "lv", "log": "no level"},
        )
        self.open("?app=lv")
        self.waitForTexts([f"at {level}" for level in levels] + ["no level"])
        shown = self.script(
            """return Array.from(document.querySelectorAll('#log .line'), n => {
              const line = getComputedStyle(n);
              return [n.dataset.level || '', line.borderLeftColor, line.backgroundColor,
                getComputedStyle(n.querySelector('.text')).opacity];
            })"""
        )
        byLevel = {level: rest for level, *rest in shown}
        self.assertEqual(list(byLevel), levels + [""])
        for level in ("error", "fatal"):
            self.assertTrue(reddish(byLevel[level][0]), (level, byLevel[level]))
        r, g, b = rgb(byLevel["warn"][0])
        self.assertGreater(r, b + 100)
        self.assertGreater(g, b + 50)
        plainBorder, plainBackground, plainOpacity = byLevel[""]
        for level in ("warn", "error", "fatal"):
            self.assertNotEqual(byLevel[level][1], plainBackground, level)
        for level in ("trace", "debug"):
            self.assertLess(float(byLevel[level][2]), float(plainOpacity), level)
        self.assertEqual(byLevel["info"], [plainBorder, plainBackground, plainOpacity])
        self.screenshot("levels")

        from selenium.webdriver.support.ui import Select

        Select(self.driver.find_element("name", "level")).select_by_value("warn")
        self.waitForTexts(["at warn", "at error", "at fatal"])
        self.assertIn("level=warn", self.driver.current_url)
        self.publishRecords(
            {"app": "lv", "log": "later info", "level": "info"},
            {"app": "lv", "log": "later error", "level": "error"},
        )
        self.waitForTexts(["at warn", "at error", "at fatal", "later error"])
        self.driver.refresh()
        self.waitForTexts(["at warn", "at error", "at fatal", "later error"])
        self.assertEqual(self.driver.find_element("name", "level").get_attribute("value"), "warn")
        Select(self.driver.find_element("name", "level")).select_by_value("")
        self.waitForTexts(
            [f"at {level}" for level in levels] + ["no level", "later info", "later error"]
        )
        self.assertNotIn("level=", self.driver.current_url)
        self.open("?app=lv&level=WARNING")
        self.waitForTexts(["at warn", "at error", "at fatal", "later error"])
        self.assertEqual(
            self.driver.find_element("name", "level").get_attribute("value"), "WARNING"
        )

    def state(self) -> tuple[str, str]:
        """
        What the footer says of the stream, and the mark before it.
        """
        text, mark = self.script(
            "const s = document.getElementById('state');"
            "return [s.textContent, getComputedStyle(s, '::before').content]"
        )
        return text, mark

    def waitForState(self, text: str) -> None:
        waitUntil(self.driver, lambda d: self.state()[0] == text, f"the state {text!r}")

    def chooseRange(self, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.driver.find_element("name", "range")).select_by_value(value)

    def pageQuery(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.driver.current_url).query)

    def test_timeRange(self) -> None:
        """
        The time selector puts C{since} (and C{until}) in the page's URL and
        shows exactly the records in the range: the last hour goes on live;
        a custom range with an end shows what it holds, says it is complete
        without a live mark, and a reload keeps it; a value the server
        refuses shows its message; "live" shows everything again.
        """
        now = datetime.now(timezone.utc)
        ages = range(175, 0, -10)  # minutes before now, oldest first
        self.publishRecords(
            *(
                {"app": "tr", "time": stamp(now - timedelta(minutes=age)), "log": f"{age} min"}
                for age in ages
            )
        )
        self.open("?app=tr")
        self.waitForTexts([f"{age} min" for age in ages])

        self.chooseRange("1h")
        self.waitForTexts([f"{age} min" for age in ages if age < 60])
        self.assertEqual(self.pageQuery(), {"app": ["tr"], "since": ["1h"]})
        self.waitForState("live")
        self.assertEqual(self.state()[1], '"●"')
        self.publishRecords({"app": "tr", "log": "just now"})
        self.waitForTexts([f"{age} min" for age in ages if age < 60] + ["just now"])

        self.chooseRange("custom")
        waitUntil(
            self.driver,
            lambda d: d.find_element("id", "range-custom").is_displayed(),
            "the fields of a custom range",
        )
        since, until = stamp(now - timedelta(minutes=120)), stamp(now - timedelta(minutes=90))
        self.driver.find_element("name", "since").clear()
        self.driver.find_element("name", "since").send_keys(since)
        self.driver.find_element("name", "until").send_keys(until + "\n")
        inRange = [f"{age} min" for age in ages if 90 <= age <= 120]
        self.waitForTexts(inRange)
        self.assertEqual(self.pageQuery(), {"app": ["tr"], "since": [since], "until": [until]})
        self.waitForState("complete")
        self.assertNotEqual(self.state()[1], '"●"')
        self.assertFalse(self.driver.find_element("id", "range-custom").is_displayed())
        self.assertEqual(
            self.driver.find_element("id", "earlier").text, "no earlier records in this range"
        )
        self.screenshot("custom-range")

        self.driver.refresh()
        self.waitForTexts(inRange)
        self.waitForState("complete")
        self.assertEqual(
            self.driver.find_element("name", "range").get_attribute("value"), "current"
        )
        self.assertEqual(self.driver.find_element("name", "since").get_attribute("value"), since)

        self.chooseRange("custom")
        self.driver.find_element("name", "since").clear()
        self.driver.find_element("name", "since").send_keys("yesterday\n")
        error = waitUntil(
            self.driver,
            lambda d: (
                d.find_element("id", "error").is_displayed() and d.find_element("id", "error")
            ),
            "the error",
        )
        self.assertIn("400", error.text)
        self.assertIn("since must be an RFC 3339 time", error.text)

        self.chooseRange("")
        self.waitForTexts([f"{age} min" for age in ages] + ["just now"])
        self.assertEqual(self.pageQuery(), {"app": ["tr"]})
        self.waitForState("live")

    def test_rangeEndingLater(self) -> None:
        """
        A range that ends a few seconds from now streams live until then,
        and then says it is complete.
        """
        until = stamp(datetime.now(timezone.utc) + timedelta(seconds=6))
        self.open(f"?app=fu&until={quote(until)}")
        self.waitForState("live")
        self.publishRecords({"app": "fu", "log": "inside"})
        self.waitForTexts(["inside"])
        self.waitForState("complete")
        self.assertNotEqual(self.state()[1], '"●"')
        self.assertEqual(texts(self.driver), ["inside"])

    def scrollToTop(self) -> None:
        self.script("document.getElementById('log').scrollTop = 0")

    def test_loadEarlier(self) -> None:
        """
        Scrolled to the top, the page loads the records before the oldest
        it shows, a page at a time, each record once and in order though
        times repeat, keeps the lines in view where they were, and says
        when history holds no earlier ones; with a C{since} it stops there.
        """
        base = datetime(2026, 1, 2, 3, 0, tzinfo=timezone.utc)
        self.publishRecords(
            *(
                {"app": "early", "time": stamp(base + timedelta(seconds=n // 3)), "log": f"r{n}"}
                for n in range(450)
            )
        )
        self.open("?app=early")
        self.waitForTexts([f"r{n}" for n in range(250, 450)])
        self.assertFalse(self.driver.find_element("id", "earlier").is_displayed())
        self.scrollToTop()
        self.waitForTexts([f"r{n}" for n in range(50, 450)])
        place = self.script(
            "const v = document.getElementById('log');"
            "const line = document.querySelectorAll('#log .line')[200];"
            "return [v.scrollTop, line.getBoundingClientRect().top - v.getBoundingClientRect().top,"
            " line.textContent]"
        )
        self.assertGreater(place[0], 0)
        self.assertIn("r250", place[2])
        self.assertTrue(0 <= place[1] <= 60, place)
        self.assertEqual(
            self.script("return document.getElementById('count').textContent"), "400 lines"
        )
        self.screenshot("earlier-loaded")

        self.scrollToTop()
        self.waitForTexts([f"r{n}" for n in range(450)])
        waitUntil(
            self.driver,
            lambda d: d.find_element("id", "earlier").text == "no earlier records",
            "the page to say there are no earlier records",
        )
        self.assertEqual(
            self.script("return document.getElementById('count').textContent"), "450 lines"
        )
        self.screenshot("no-earlier")

        self.open(f"?app=early&since={quote(stamp(base + timedelta(seconds=40)))}")
        self.waitForTexts([f"r{n}" for n in range(250, 450)])
        self.waitForState("live")
        self.scrollToTop()
        self.waitForTexts([f"r{n}" for n in range(120, 450)])
        waitUntil(
            self.driver,
            lambda d: d.find_element("id", "earlier").text == "no earlier records in this range",
            "the page to say there are no earlier records in the range",
        )


class GuardedViewerTests(SynchronousTestCase):
    """
    The page on a server with C{--auth}.
    """

    def test_tokenFromTheURL(self) -> None:
        """
        The page passes on the token of its own URL to the stream and to
        C{/topics}: it shows the lines and topics of the apps the token
        allows; without one it shows the 401, in the panel too.
        """
        from tests.support.tokens import tokensFile

        token = "viewer-token-0123456789"
        server = Server(
            self, "--auth", tokensFile(self, f"{token} sub ^shop$\nwriter-0123456789abc pub .*\n")
        )
        driver = browser(self)
        for app in ("shop", "shopping"):
            server.publish(f"app={app}&token=writer-0123456789abc\nfor {app}\n".encode()).close()
        driver.get(f"http://127.0.0.1:{server.subscribePort}/ui?app=.*&token={token}")
        waitUntil(driver, lambda d: texts(d) == ["for shop"], "the shop line")
        waitUntil(
            driver,
            lambda d: (
                d.execute_script(
                    "return Array.from(document.querySelectorAll('#topics .app-row .name'),"
                    " n => n.textContent)"
                )
                == ["shop"]
            ),
            "only the shop app in the topics panel",
        )
        driver.get(f"http://127.0.0.1:{server.subscribePort}/ui?app=.*")
        error = waitUntil(
            driver,
            lambda d: (
                d.find_element("id", "error").is_displayed() and d.find_element("id", "error")
            ),
            "the error",
        )
        self.assertIn("401", error.text)
        waitUntil(
            driver,
            lambda d: "cannot read /topics: 401" in d.find_element("css selector", "#topics").text,
            "the panel to say /topics was refused",
        )
