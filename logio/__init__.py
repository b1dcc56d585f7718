"""
logio: a self-hosted log plexer.

Importing this package has no side effects. C{import logio.auto} attaches a
L{LogioHandler} to the root logger when C{LOGIO_URL} is set.
"""

from logio.client import __getattr__ as __getattr__  # LogioHandler, on first use


def version() -> str:
    """
    The installed distribution's version, or C{unknown} for a checkout that
    was never installed.
    """
    import importlib.metadata

    try:
        return importlib.metadata.version("logio")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
