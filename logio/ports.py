# -*- test-case-name: tests.test_tap -*-
"""
The default ports, shared by the server and the client (so this module
needs nothing but the standard library).
"""

#: Where publishers connect: seed JSON, text lines or syslog over TCP.
PUBLISH_PORT = 7701
#: Where subscribers (and HTTP publishers) connect: HTTP.
SUBSCRIBE_PORT = 7702
