# -*- test-case-name: tests.test_redis_address -*-
"""
Where a Redis server is and how to reach it: C{redis://} and C{rediss://}
URLs parsed into a L{RedisAddress}, and the TLS options that check its
certificate.

Error messages name what is wrong in a URL but never repeat the URL: a
password in it would end up in a log.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from attrs import field, frozen
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates

#: The port a Redis server listens on unless told otherwise.
DEFAULT_PORT = 6379

_SCHEMES = {"redis": False, "rediss": True}


@frozen
class RedisAddress:
    """
    A Redis server and the credentials and database to use on it.

    @ivar host: A host name or an IP address (without brackets).
    @ivar port: The TCP port.
    @ivar db: The database number to C{SELECT}.
    @ivar username: The ACL user to C{AUTH} as, or L{None} for the default
        user.
    @ivar password: The password to C{AUTH} with, or L{None} to send no
        C{AUTH}.
    @ivar tls: Whether to speak TLS (C{rediss://}).
    @ivar ca: The path of a PEM file of the certificates that may sign the
        server's certificate, or L{None} for the system's trusted ones; only
        with C{tls}.
    """

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca: str | None = None

    def describe(self) -> str:
        """
        The server as a URL without the credentials, for log messages.
        """
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.db}"


def parseRedisURL(url: str, ca: str | None = None) -> RedisAddress:
    """
    Parse C{redis://[[user]:password@]host[:port][/db]} or the same with
    C{rediss://} (TLS).  User name and password may hold URL escapes
    (C{%40} for C{@}).

    @param url: The URL.
    @param ca: The path of a PEM file of CA certificates to check a
        C{rediss://} server's certificate against.

    @raise ValueError: The URL is not one of these, or C{ca} is given for
        C{redis://}; the message says what is wrong without repeating the
        URL.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("the host in the Redis URL is not a valid [IPv6] address") from None
    scheme = parts.scheme.lower()
    if "://" not in url or scheme not in _SCHEMES:
        raise ValueError("a Redis URL starts with redis:// or rediss://")
    if parts.query or parts.fragment:
        raise ValueError(
            "a Redis URL has no ?query or #fragment (a '?' or '#' in a password"
            " is written %3F or %23)"
        )
    if not parts.hostname:
        raise ValueError("the Redis URL names no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port in the Redis URL is not a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("the port in the Redis URL is not a number from 1 to 65535")
    path = parts.path.removeprefix("/")
    if path and not (path.isascii() and path.isdigit()):
        raise ValueError("the path of a Redis URL is a database number, such as /0")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if username is not None and password is None:
        raise ValueError(
            "the Redis URL names a user but no password (write user:password@ or :password@)"
        )
    tls = _SCHEMES[scheme]
    if ca is not None and not tls:
        raise ValueError("a CA file applies only to rediss:// (TLS) URLs")
    return RedisAddress(
        host=parts.hostname,
        port=DEFAULT_PORT if port is None else port,
        db=int(path or 0),
        username=username,
        password=password,
        tls=tls,
        ca=ca,
    )


def clientTLSOptions(address: RedisAddress) -> IOpenSSLClientConnectionCreator:
    """
    TLS options that accept only a certificate for C{address.host} signed by
    a certificate in C{address.ca}, or by one the system trusts when no CA
    file is given.

    @raise ValueError: The CA file cannot be read or holds no certificate.
    """
    if address.ca is None:
        return optionsForClientTLS(address.host)
    from cryptography.x509 import load_pem_x509_certificates
    from OpenSSL.crypto import X509

    try:
        with open(address.ca, "rb") as pem:
            loaded = load_pem_x509_certificates(pem.read())
    except OSError as e:
        raise ValueError(f"cannot read the Redis CA file {address.ca}: {e.strerror}") from None
    except ValueError:
        raise ValueError(
            f"the Redis CA file {address.ca} holds no PEM certificate that can be read"
        ) from None
    trusted = [Certificate(X509.from_cryptography(each)) for each in loaded]
    return optionsForClientTLS(address.host, trustRoot=trustRootFromCertificates(trusted))
