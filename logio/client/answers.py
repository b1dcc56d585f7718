# -*- test-case-name: tests.test_client_e2e -*-
"""
What a publisher tells its user, and what a server's last words mean: the
server sends nothing unless it is about to close the connection, so
whatever it sends says why.
"""

from __future__ import annotations

import sys
from typing import Optional

from logio.ports import PUBLISH_PORT

#: The first byte of each kind of TLS record a server may answer with:
#: handshake and alert.
TLS_RECORDS = (b"\x16", b"\x15")


def lastWords(said: bytes, where: str, tls: bool) -> tuple[Optional[str], bool]:
    """
    What to tell the user when the server at C{where} closed the connection
    after saying C{said} (perhaps nothing), over TLS or not.

    @return: The message (or L{None}: nothing to say), and whether the
        server refused the stream (rather than going away).
    """
    if said[:1] in TLS_RECORDS and not tls:
        return f"logio: {where} answered in TLS: TLS server? publish to it with logios://", True
    if said.startswith(b"HTTP/"):
        return (
            f"logio: {where} answered in HTTP: that is the subscriber (HTTP) port; "
            f"publishers connect to port {PUBLISH_PORT} (logio://HOST:{PUBLISH_PORT})",
            True,
        )
    if said.strip():
        text = said.decode("utf-8", "replace").strip().splitlines()[0]
        # "logio: ..." is the server going away, not refusing: no fault.
        return f"logio: {where} closed the connection: {text}", not text.startswith("logio: ")
    if not tls:
        # A logio server says why it closes; a TLS server that got plain
        # text says nothing.
        return (
            f"logio: {where} closed the connection without an answer: "
            "TLS server? (then publish with logios://)",
            True,
        )
    return None, False


def toStderr(message: str) -> None:
    """
    The default report of a publisher: one line on stderr, if there is one.
    """
    try:
        if sys.stderr is not None:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()
    except Exception:
        pass
