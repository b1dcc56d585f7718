"""
The Python client: L{LogioHandler} for C{logging}, and the C{logio} command.

Nothing here needs Twisted. Importing this package is cheap and has no side
effects: the handler's module is imported when C{LogioHandler} is first used.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """
    Import L{LogioHandler} on first use (also serves C{logio.LogioHandler}).
    """
    if name == "LogioHandler":
        from logio.client.handler import LogioHandler

        return LogioHandler
    raise AttributeError(f"module 'logio' has no attribute {name!r}")
