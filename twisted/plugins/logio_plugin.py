"""The twistd plugin: makes C{twistd logio} run the logio server."""

from twisted.application.service import ServiceMaker

logio = ServiceMaker(
    "logio",
    "logio.server.tap",
    "A log plexer: publish log lines over TCP, subscribe over HTTP with regexes.",
    "logio",
)
