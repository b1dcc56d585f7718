# -*- test-case-name: tests.test_web -*-
"""
The small pieces of HTTP that both the subscriber port's site and HTTP
ingest use: a one-line answer, a request body that keeps nothing, an early
refusal, the media type of a request.  They meet here, not in each other.
"""

from __future__ import annotations

from twisted.web.server import Request

#: Plain text: the text format's media type, and that of the server's
#: one-line answers.
PLAIN_TEXT = b"text/plain; charset=utf-8"


def reply(request: Request, code: int, body: str) -> bytes:
    """
    Answer C{request} with C{code} and a one-line plain text C{body}.
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", PLAIN_TEXT)
    return f"{body}\n".encode("utf-8", "replace")


def mediaType(request: Request) -> bytes:
    """
    The media type of a request's body, lower case, without parameters.
    """
    header = request.getHeader(b"content-type") or b""
    return header.partition(b";")[0].strip().lower()


class Sink:
    """
    A request body's file that keeps nothing: what Twisted's L{Request}
    asks of C{content} besides C{write}, answered as an empty file.

    @ivar most: The most bytes it holds at once, for the server's bound on
        what bodies hold together.
    """

    most = 0

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


class Discard(Sink):
    """
    The body of a request that was refused: it goes nowhere.
    """

    def write(self, data: bytes) -> None:
        pass


class Refused(Exception):
    """
    A request refused before its body arrives: the site answers C{code}
    with the message at once and closes the connection.

    @ivar side: Whose refusal it is in the refusal log: C{publisher} or
        C{subscriber}.
    @ivar cause: A short fixed text naming the kind of refusal.
    """

    def __init__(self, code: int, message: str, cause: str, side: str) -> None:
        super().__init__(message)
        self.code = code
        self.cause = cause
        self.side = side
