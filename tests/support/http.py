"""
HTTP without sockets: a client of a L{Site} over a L{StringTransport}, the
bytes of a request, chunked transfer coding both ways, and the events of a
server-sent event stream.
"""

from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.web.server import Site


def chunk(data: bytes) -> bytes:
    """
    One HTTP/1.1 chunk holding C{data}.
    """
    return b"%x\r\n%s\r\n" % (len(data), data)


def decodeChunks(raw: bytes) -> tuple[bytes, bool, bytes]:
    """
    Decode the whole chunks at the start of C{raw}, a chunked body whose
    head is gone.

    @return: the data of those chunks; whether the last chunk (of size 0)
        was among them; and the rest of C{raw}: an incomplete chunk, or
        what follows the last chunk.
    """
    data: list[bytes] = []
    position = 0
    while True:
        end = raw.find(b"\r\n", position)
        if end < 0:
            break
        size = int(raw[position:end].partition(b";")[0], 16)
        start = end + 2
        if size == 0:
            return b"".join(data), True, raw[start:]
        if len(raw) < start + size + 2:
            break
        assert raw[start + size : start + size + 2] == b"\r\n", "bad chunk framing"
        data.append(raw[start : start + size])
        position = start + size + 2
    return b"".join(data), False, raw[position:]


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """
    Decode a chunked body; return the data and whether the final chunk came.
    """
    data, ended, rest = decodeChunks(body)
    assert ended or not rest, "incomplete chunk"
    return data, ended


def sseEvents(data: bytes) -> list[dict[str, str]]:
    """
    Parse an event stream the way the SSE specification says: fields up to
    a blank line, C{data} lines joined.
    """
    events = []
    for block in data.decode().split("\n\n")[:-1]:
        event: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            event[name] = event[name] + "\n" + value if name in event else value
        events.append(event)
    return events


def get(query: str = "", method: bytes = b"GET") -> bytes:
    """
    An HTTP/1.1 request for C{/?query}.
    """
    return method + b" /?" + query.encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"


class Client:
    """
    One HTTP connection to a L{Site} over a L{StringTransport}.
    """

    def __init__(
        self, site: Site, request: bytes, transport: StringTransport | None = None
    ) -> None:
        self.transport = transport or StringTransport()
        self.channel = site.buildProtocol(None)
        self.channel.makeConnection(self.transport)
        self.channel.dataReceived(request)

    def response(self) -> tuple[bytes, bytes]:
        """
        The raw head and body written so far.
        """
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        return head, body

    def body(self) -> bytes:
        """
        The body written so far, its chunks decoded.
        """
        return dechunk(self.response()[1])[0]
