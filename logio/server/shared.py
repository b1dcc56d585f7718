# -*- test-case-name: tests.test_reuseport -*-
"""
Listeners that several server processes on one machine share: each binds
the same address with C{SO_REUSEPORT}, and the kernel spreads new
connections among them.

Twisted's endpoint strings cannot ask for C{SO_REUSEPORT}, so such an
endpoint is built on L{SharedPorts}, which takes the reactor's place where a
C{tcp:}, C{tcp6:} or C{ssl:} server endpoint listens: it binds the socket
itself and hands it to the reactor.
"""

from __future__ import annotations

import socket
from typing import cast

from twisted.internet.abstract import isIPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLContextFactory,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IReactorSocket,
)
from twisted.internet.protocol import ServerFactory
from twisted.protocols.tls import TLSMemoryBIOFactory

#: The endpoint kinds whose listeners can be shared.
SHAREABLE = ("tcp", "tcp6", "ssl")


class SharedPorts:
    """
    The C{listenTCP} and C{listenSSL} of a reactor, which are all that
    Twisted's C{tcp:}, C{tcp6:} and C{ssl:} server endpoints call, listening
    on sockets that other processes of the same user may bind too.

    A listener that did not ask for C{SO_REUSEPORT} on the same address
    still makes a bind fail, either way round.

    @ivar reactor: The reactor that serves the sockets.
    """

    def __init__(self, reactor: IReactorSocket) -> None:
        self.reactor = reactor

    def listenTCP(
        self, port: int, factory: IProtocolFactory, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        """
        Listen on C{port} of C{interface} (all of them if empty; an IPv6
        address gives an IPv6 socket, as Twisted's C{listenTCP} does).

        @raise CannotListenError: The socket cannot be bound or listened on.
        """
        family = socket.AF_INET6 if isIPv6Address(interface) else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as listening:
            try:
                if family == socket.AF_INET6:
                    # Scoped addresses (fe80::1%eth0) need their scope id.
                    address = socket.getaddrinfo(
                        interface, port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
                    )[0][4]
                else:
                    address = (interface, port)
                listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if port:
                    # Not for port 0, "any free port": the kernel may then
                    # pick a port another node listens on, and share it.
                    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                listening.bind(address)
                listening.listen(backlog)
            except OSError as e:
                raise CannotListenError(interface, port, e) from None
            listening.setblocking(False)
            # The port listens on a copy of the socket; this one is closed
            # on the way out.  The port needs only what any protocol factory
            # has, though the interface names a ServerFactory.
            return self.reactor.adoptStreamPort(
                listening.fileno(), family, cast(ServerFactory, factory)
            )

    def listenSSL(
        self,
        port: int,
        factory: IProtocolFactory,
        contextFactory: IOpenSSLContextFactory | IOpenSSLServerConnectionCreator,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        """
        Listen as L{listenTCP} does, for TLS connections set up by
        C{contextFactory}, as the reactor's own C{listenSSL} does.
        """
        tls = TLSMemoryBIOFactory(contextFactory, False, factory)
        return self.listenTCP(port, tls, backlog, interface)
