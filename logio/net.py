# -*- test-case-name: tests.test_net -*-
"""
Socket options and address formatting, shared by the publisher and
subscriber sides and the listeners.
"""

from __future__ import annotations

import ipaddress
import select
import socket
from typing import Any, Sequence, TypeGuard

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.tcp import Connection

#: How much a subscriber's socket may send in one reactor pass (Twisted's
#: default is 128 KiB), and how much may wait in its transport before the
#: subscription is paused and starts queueing (default 64 KiB).  With the
#: defaults, a chunk of output from one 64 KiB read already pauses the
#: subscription, and one chunk leaves the queue per pass while several
#: publishers' chunks arrive: a subscriber that keeps up would lose lines.
SEND_LIMIT = 4 * 1024 * 1024
PAUSE_AT = 1024 * 1024


#: TCP keepalive: probe a peer after this many idle seconds, this often,
#: this many times, before the connection is given up (Linux defaults to
#: two hours of silence first).
KEEPALIVE = (60, 10, 3)


def tuneSocket(transport: object) -> None:
    """
    Turn on TCP keepalive (dead peers are found within a few minutes) and
    TCP_NODELAY (no Nagle delay) where the transport is TCP, TLS-wrapped or
    not.
    """
    if ITCPTransport.providedBy(transport):
        transport.setTcpKeepAlive(True)
        transport.setTcpNoDelay(True)
        handle = getattr(transport, "getHandle", lambda: None)()
        # UNIX sockets are "TCP" transports in Twisted too, without TCP options.
        inet = isinstance(handle, socket.socket) and handle.family in (
            socket.AF_INET,
            socket.AF_INET6,
        )
        if inet and hasattr(socket, "TCP_KEEPIDLE"):
            assert isinstance(handle, socket.socket)
            for option, value in zip(
                (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT),
                KEEPALIVE,
                strict=True,
            ):
                handle.setsockopt(socket.IPPROTO_TCP, option, value)


def widenWrites(transport: object, pauseAt: int = PAUSE_AT) -> FileDescriptor | None:
    """
    Apply L{SEND_LIMIT} and the pause threshold C{pauseAt} to the socket
    under C{transport} (TLS-wrapped or not).

    @return: The socket's transport, or L{None} if there is none underneath.
    """
    while transport is not None and not isinstance(transport, FileDescriptor):
        transport = getattr(transport, "transport", None)
    if transport is None:
        return None
    transport.SEND_LIMIT = SEND_LIMIT
    transport.bufferSize = pauseAt
    return transport


def socketOf(transport: object) -> socket.socket | None:
    """
    The socket under C{transport} (TLS-wrapped or not), or L{None}.
    """
    while transport is not None and not isinstance(transport, FileDescriptor):
        transport = getattr(transport, "transport", None)
    handle = getattr(transport, "getHandle", lambda: None)()
    return handle if isinstance(handle, socket.socket) else None


def probePeer(handle: socket.socket) -> None:
    """
    Make a TCP peer that is gone answer with a reset, without a byte in its
    stream: one byte of TCP urgent data, which a reader that has not asked
    for it inline (curl, browsers, Python) never sees, and which a closed
    socket answers with a reset.  A UNIX socket needs no probe: its peer's
    close is seen at once (see L{peerGone}).
    """
    if handle.family in (socket.AF_INET, socket.AF_INET6):
        try:
            handle.send(b"\0", socket.MSG_OOB)
        except OSError:
            # A full send buffer (the peer is alive, or its reset is
            # already known): nothing to add.
            pass


def peerGone(handle: socket.socket) -> bool:
    """
    Whether the peer of a connected socket has closed it entirely, or reset
    it: the kernel reports a hang-up or an error.
    """
    poller = select.poll()
    poller.register(handle, select.POLLOUT)
    return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


def bufferedBytes(socket: FileDescriptor | None) -> int:
    """
    How many bytes a socket's transport holds, written but not yet sent (0
    without a socket).  Twisted keeps them in a buffer, an offset into it,
    and a list of later writes.
    """
    if socket is None:
        return 0
    return len(socket.dataBuffer) - socket.offset + socket._tempDataLen


def plainSocket(transport: object) -> TypeGuard[Connection]:
    """
    Whether C{transport} is a plain TCP (or UNIX) connection of the
    reactor's, whose socket L{sendNow} may write to: not TLS, not a test's
    fake.
    """
    return isinstance(transport, Connection) and not transport.TLS


def sendNow(transport: Connection, parts: Sequence[bytes]) -> None:
    """
    Write C{parts} to a plain socket transport (see L{plainSocket}) in one
    system call, at once, when it holds nothing else: the kernel takes it,
    and the reactor is not asked to watch the socket until it can, which
    costs two more calls and a turn of the loop.  What the kernel does not
    take, or everything while the transport holds earlier writes (so order
    is kept) or is closing, goes to the transport as usual, which also
    meets any error the socket has.
    """
    if bufferedBytes(transport) or transport.disconnecting or not transport.connected:
        transport.writeSequence(parts)
        return
    try:
        if len(parts) == 1:
            sent = transport.socket.send(parts[0])
        else:
            sent = transport.socket.sendmsg(parts)
    except OSError:
        sent = 0
    if not sent:
        transport.writeSequence(parts)
    elif sent < sum(map(len, parts)):
        transport.write(b"".join(parts)[sent:])


def peerHost(transport: object) -> str:
    """
    A peer's address as a topic host: its IP, or C{unix} for a UNIX socket
    peer.
    """
    peer = getattr(transport, "getPeer", lambda: None)()
    return str(getattr(peer, "host", None) or "unix")


def isLocal(address: object) -> bool:
    """
    Whether an address is of this machine only: a loopback IP (an IPv4 one
    mapped into IPv6 too), or not an IP at all (a UNIX socket, guarded by
    its file's mode).
    """
    host = getattr(address, "host", None)
    return host is None or isLoopback(str(host))


def isLoopback(host: str) -> bool:
    """
    Whether C{host} is a loopback IP address (an IPv4 one mapped into IPv6
    too).
    """
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


#: How long a connection refused with an error line or answer is still read
#: (what comes discarded) before it is closed, if the client does not close
#: it first: closing with its input unread would reset the connection, and
#: the client would lose the error.
LINGER = 2.0

#: The refusal cause of a peer beyond this machine in protected mode.
PROTECTED_MODE = "a peer beyond this machine (protected mode)"
#: What a peer beyond this machine is told by a server in protected mode.
PROTECTED = (
    "this server has no --auth, so it answers this machine only: start it with "
    "--auth FILE (tokens) to let others in, or with --public on a network you trust"
)


def describePeer(address: Any) -> str:
    """
    A peer's address for the log: C{host:port}, or C{unix}.
    """
    port = getattr(address, "port", None)
    return f"{getattr(address, 'host', 'unix')}:{port}" if port is not None else "unix"


def describeAddress(address: Any) -> str:
    """
    A human-readable listening address: C{tcp 127.0.0.1:7701}, C{unix /path}.
    """
    kind = getattr(address, "type", None)
    if kind is not None:
        return f"{kind.lower()} {address.host}:{address.port}"
    name = getattr(address, "name", address)
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return f"unix {name}"
