"""
C{import logio.auto}: publish the root logger's records to C{LOGIO_URL}.

With C{LOGIO_URL} set, importing this module attaches a L{LogioHandler} to the
root logger; C{LOGIO_LEVEL} (a level name or number), if set, is the handler's
level. With C{LOGIO_URL} unset it does nothing. The root logger's own level is
left alone, and Python's default for it is WARNING.

@var handler: the handler attached, or C{None}.
"""

from __future__ import annotations

import logging
import os

from logio.client.handler import LogioHandler


def _level(text: str) -> int:
    """
    Read C{LOGIO_LEVEL}: C{DEBUG}, C{info}, C{25}, ...

    @raise ValueError: it names no level.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    level = logging.getLevelName(text.upper())
    if not isinstance(level, int):
        raise ValueError(
            f"LOGIO_LEVEL={text!r} is not a logging level "
            "(use DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)"
        )
    return level


def _attach() -> LogioHandler | None:
    """
    Attach the handler if C{LOGIO_URL} is set.
    """
    url = os.environ.get("LOGIO_URL")
    if not url:
        return None
    level = _level(os.environ.get("LOGIO_LEVEL") or "NOTSET")
    new = LogioHandler(url)
    new.setLevel(level)
    logging.getLogger().addHandler(new)
    return new


handler = _attach()
