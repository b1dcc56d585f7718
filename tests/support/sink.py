"""
Servers for the client tests, on plain threads and sockets: L{TestServer},
which a test tells how to talk, and L{Sink}, which records what each
publisher sent.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.support.waiting import waitFor


def decodeStream(data: bytes) -> list[Any]:
    """
    The JSON values written back to back (whitespace allowed between them);
    an incomplete last value is left out.
    """
    text = data.decode("utf-8")
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return values
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return values
        values.append(value)


class TestServer:
    """
    A listening socket served by threads: L{connected} runs in the accepting
    thread for each connection, in order; L{serve} then runs in a thread of
    its own (after the TLS handshake, with C{tls}).
    """

    def __init__(
        self,
        testCase: SynchronousTestCase,
        port: int = 0,
        *,
        unix: str | None = None,
        tls: ssl.SSLContext | None = None,
        receiveBuffer: int | None = None,
    ) -> None:
        """
        Start listening on 127.0.0.1:C{port} (0 for any free port), or on
        the Unix socket C{unix}.
        """
        self.tls = tls
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._stopped = False
        if unix is None:
            self.listener = socket.socket()
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if receiveBuffer is not None:
                self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
            self.listener.bind(("127.0.0.1", port))
            self.port = int(self.listener.getsockname()[1])
        else:
            self.listener = socket.socket(socket.AF_UNIX)
            self.listener.bind(unix)
            self.port = 0
        self.listener.listen(16)
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()
        testCase.addCleanup(self.stop)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if not self._keep(conn):
                return
            state = self.connected(conn)
            thread = threading.Thread(target=self._serve, args=(conn, state), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, state: Any) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                if not self._keep(conn):
                    return
            self.serve(conn, state)
        except OSError:
            pass

    def _keep(self, conn: socket.socket) -> bool:
        """
        Track C{conn} to close it on L{stop}; once stopped, close it now.
        """
        with self._lock:
            if not self._stopped:
                self._open.append(conn)
                return True
        conn.close()
        return False

    def connected(self, conn: socket.socket) -> Any:
        """
        A connection was accepted; what this returns is given to L{serve}.
        """

    def serve(self, conn: socket.socket, state: Any) -> None:
        """
        Talk to one connection; return to leave it open and idle.
        """

    def stop(self) -> None:
        """
        Stop listening and close every connection (as a server that exits).
        """
        with self._lock:
            self._stopped = True
            conns, self._open = self._open, []
        try:
            # Wakes the accepting thread, which close() alone would not.
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for thread in self._threads:
            thread.join(5)


class Sink(TestServer):
    """
    A server that accepts publisher connections and keeps their bytes.

    @ivar connections: the bytes received, one C{bytearray} per connection
        in the order they were accepted.
    """

    def __init__(
        self,
        testCase: SynchronousTestCase,
        port: int = 0,
        *,
        read: bool = True,
        unix: str | None = None,
        tls: ssl.SSLContext | None = None,
        reply: bytes | None = None,
        slow: bool = False,
    ) -> None:
        """
        @param read: C{False} to accept connections and never read them.
        @param reply: on each connection, once something arrives, send this
            and close, as the server does on a protocol error.
        @param slow: read at most 16 KiB a millisecond (at most 16 MB/s): a
            server that reads, but slower than a publisher can write.
        """
        self.read = read
        self.reply = reply
        self.slow = slow
        self.connections: list[bytearray] = []
        # Small buffers fill quickly when nobody reads, or reads slowly.
        buffer = 16384 if slow else None if read else 4096
        super().__init__(testCase, port, unix=unix, tls=tls, receiveBuffer=buffer)

    def connected(self, conn: socket.socket) -> bytearray:
        received = bytearray()
        with self._lock:
            self.connections.append(received)
        return received

    def serve(self, conn: socket.socket, received: bytearray) -> None:
        if not self.read:
            return
        while data := conn.recv(16384 if self.slow else 65536):
            with self._lock:
                received += data
            if self.slow:
                time.sleep(0.001)  # the pace of a slow server, not a wait
            if self.reply is not None:
                conn.sendall(self.reply)
                conn.close()
                return

    def values(self, index: int | None = None) -> list[Any]:
        """
        The JSON values of one connection, or of all of them in order.
        """
        with self._lock:
            chosen = self.connections if index is None else [self.connections[index]]
            return [value for data in chosen for value in decodeStream(bytes(data))]

    def raws(self) -> list[str]:
        """
        The C{raw} texts of every record received, in order.
        """
        return [value["raw"] for value in self.values() if "raw" in value]

    def waitForRaws(self, count: int, timeout: float = 20) -> list[str]:
        """
        Wait until at least C{count} records arrived; return all their texts.
        """
        waitFor(lambda: len(self.raws()) >= count, timeout, f"{count} records")
        return self.raws()
