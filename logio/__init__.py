"""
logio: a self-hosted log plexer.

Importing this package has no side effects. C{import logio.auto} attaches a
L{LogioHandler} to the root logger when C{LOGIO_URL} is set.
"""

from logio.client import __getattr__ as __getattr__  # LogioHandler, on first use
