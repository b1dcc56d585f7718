"""
What the tests share, one concern per module; no tests live here.

  - L{tests.support.waiting}: how long to wait, and polling until something
    holds.
  - L{tests.support.processes}: subprocesses that run this checkout's code
    (Python, the C{logio} command), C{curl}, and stopping and measuring a
    process.
  - L{tests.support.ports}: free ports and short UNIX socket paths to
    listen on.
  - L{tests.support.server}: a real C{twistd -n logio} in a subprocess, and
    blocking HTTP clients for it.
  - L{tests.support.http}: HTTP over a L{StringTransport}: a client of a
    L{Site}, request bytes, chunked bodies and server-sent events.
  - L{tests.support.fakes}: test doubles for the broker, a subscriber and a
    TCP transport.
  - L{tests.support.publisher}: a publisher-port protocol over a
    L{StringTransport}, with a fixed clock and peer.
  - L{tests.support.payloads}: what real publishers send: seed JSON as the
    Go client writes it, and an OpenTelemetry Collector's OTLP/HTTP export.
  - L{tests.support.metrics}: Prometheus text, parsed.
  - L{tests.support.tokens}: tokens files.
  - L{tests.support.tls}: a CA and a server certificate made on the spot.
  - L{tests.support.sink}: servers on plain threads and sockets for the
    client tests: one that records what each publisher sent.

The benchmark (C{bench}) starts its servers with these helpers too.
"""
