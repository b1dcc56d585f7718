# -*- test-case-name: tests.test_viewer -*-
"""
C{/ui}: the web viewer, one page of HTML, CSS and plain JavaScript modules
served from the package's data (no build step, nothing fetched from
elsewhere).
The page subscribes like any client, over server-sent events; it needs no
token itself (it holds no data), and passes on the C{?token=} of its own
URL to the stream on a server with C{--auth}.
"""

from __future__ import annotations

from importlib.resources import files

from twisted.web.resource import Resource
from twisted.web.server import Request

from logio.http import reply

#: What the page may load and where it may connect: itself only.
CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

#: The viewer's files, by path under C{/ui/}, with their media types.
FILES = {
    b"": ("index.html", b"text/html; charset=utf-8"),
    b"app.js": ("app.js", b"text/javascript; charset=utf-8"),
    b"text.js": ("text.js", b"text/javascript; charset=utf-8"),
    b"topics.js": ("topics.js", b"text/javascript; charset=utf-8"),
    b"range.js": ("range.js", b"text/javascript; charset=utf-8"),
    b"app.css": ("app.css", b"text/css; charset=utf-8"),
}


class ViewerResource(Resource):
    """
    Serve the viewer's files, read once, with a strict Content-Security-Policy.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        folder = files("logio.web") / "ui"
        self._files = {
            path: ((folder / name).read_bytes(), kind) for path, (name, kind) in FILES.items()
        }

    def render_GET(self, request: Request) -> bytes:
        path = b"/".join(request.postpath or [])
        found = self._files.get(path)
        if found is None:
            return reply(request, 404, "not found")
        data, kind = found
        request.setHeader(b"content-type", kind)
        request.setHeader(b"content-security-policy", CSP)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"cache-control", b"no-cache")
        return data
