# -*- test-case-name: tests.test_client_url -*-
"""
Parse the URL that tells a publisher where to send and under which topic.

    logio://[TOKEN@]HOST[:PORT]?app=APP[&proc=PROC][&host=HOST]     plain TCP
    logios://[TOKEN@]HOST[:PORT]?app=APP[...][&ca=/path/ca.pem]     TLS
    logio+unix:///path/to/socket?app=APP[...]                        a Unix socket

The port defaults to 7701. C{app} is required; C{proc} defaults to the program's
name (the base name of C{sys.argv[0]}) and C{host} to the machine's host name.
The token a server started with C{--auth} asks for is the URL's user name,
or its password if it has both (C{logio://user:TOKEN@host}, the Go client's
shape); without one, C{LOGIO_TOKEN} is used if set.

Every mistake is a L{ValueError} that says what is wrong, raised at once,
including a topic the server would refuse (L{logio.fields}); the URL in the
message never shows the token.  The defaults are not the user's mistake, so
they are made acceptable instead (see L{acceptable}).
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from logio.fields import acceptable, fieldProblem
from logio.ports import PUBLISH_PORT

DEFAULT_PORT = PUBLISH_PORT

_SCHEMES = ("logio", "logios", "logio+unix")
_PARAMETERS = ("app", "proc", "host", "ca")


@dataclass(frozen=True)
class PublishURL:
    """
    Where to publish and the topic to publish under.

    @ivar address: C{(host, port)} for TCP, or the path of a Unix socket.
    @ivar tls: whether to speak TLS (C{logios://}).
    @ivar ca: a PEM file of CA certificates to trust instead of the system's.
    @ivar token: the token to present, if any (never in the C{repr}).
    """

    address: tuple[str, int] | str
    tls: bool
    ca: str | None
    app: str
    proc: str
    host: str
    token: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """
        Name the server for messages: C{host:port} or the socket path.
        """
        if isinstance(self.address, str):
            return self.address
        host, port = self.address
        if ":" in host:
            return f"[{host}]:{port}"
        return f"{host}:{port}"


def program_name() -> str:
    """
    The default C{proc}: the base name of C{sys.argv[0]}, or C{python}.
    """
    argv = getattr(sys, "argv", None) or [""]
    name = os.path.basename(argv[0])
    if name in ("", "-c", "-m"):
        return "python"
    return name


def parse_url(url: str) -> PublishURL:
    """
    Parse a publisher URL.

    @raise ValueError: the URL is not one logio can publish to; the message
        says why.
    """
    parts = urlsplit(url)
    # Messages show the URL without its user name and password.
    url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"logio URL {url!r} must start with logio://, logios:// or logio+unix://")
    params: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _PARAMETERS:
            known = ", ".join(_PARAMETERS)
            raise ValueError(
                f"logio URL {url!r} has an unknown parameter {name!r} (known: {known})"
            )
        if name in params:
            raise ValueError(f"logio URL {url!r} gives {name!r} more than once")
        params[name] = value
    app = params.get("app", "")
    if not app:
        raise ValueError(f"logio URL {url!r} has no app: add ?app=NAME")
    ca = params.get("ca") or None
    if ca is not None and scheme != "logios":
        raise ValueError(f"logio URL {url!r}: ?ca= is only for logios:// (TLS)")
    for name in ("app", "proc", "host"):
        problem = fieldProblem(name, params.get(name, ""))
        if problem is not None:
            raise ValueError(f"logio URL {url!r}: {problem}")
    token = unquote(parts.password or parts.username or "") or os.environ.get("LOGIO_TOKEN")
    return PublishURL(
        address=_address(url, parts),
        tls=scheme == "logios",
        ca=ca,
        app=app,
        proc=params.get("proc") or acceptable(program_name()),
        host=params.get("host") or acceptable(socket.gethostname()),
        token=token or None,
    )


def _address(url: str, parts: SplitResult) -> tuple[str, int] | str:
    """
    The server's address: a Unix socket path, or C{(host, port)}.
    """
    if parts.scheme.lower() == "logio+unix":
        if parts.netloc or not parts.path:
            raise ValueError(
                f"logio URL {url!r}: write a Unix socket as logio+unix:///path/to/socket"
            )
        return parts.path
    if parts.path not in ("", "/"):
        raise ValueError(f"logio URL {url!r}: a path ({parts.path!r}) means nothing here")
    if not parts.hostname:
        raise ValueError(f"logio URL {url!r} has no host name")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"logio URL {url!r} has a bad port: use 1 to 65535")
    return (parts.hostname, port or DEFAULT_PORT)


def tlsContext(target: PublishURL) -> ssl.SSLContext:
    """
    A client TLS context that verifies the certificate and host name, with
    the system's CAs or only those in C{target.ca}.

    @raise ValueError: the CA file cannot be loaded.
    """
    try:
        return ssl.create_default_context(cafile=target.ca)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot load the logio CA file {target.ca!r}: {e}") from e
