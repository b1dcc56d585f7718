"""
Reading the far end of a socket pair in unit tests.
"""

from __future__ import annotations

import socket


def readAvailable(sock: socket.socket) -> bytes:
    """
    Everything C{sock} (non-blocking) can read now.
    """
    data = b""
    while True:
        try:
            more = sock.recv(1 << 20)
        except BlockingIOError:
            return data
        if not more:
            return data
        data += more
