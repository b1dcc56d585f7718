"""
Everything that turns bytes into records: the publisher port's protocols
(seed JSON, text lines, syslog over TCP, and the sniffer that chooses among
them), syslog over UDP, and HTTP ingest (C{POST /publish}, OTLP).  What comes
in meets the subscriber side only in the broker.
"""
