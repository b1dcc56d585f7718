# -*- test-case-name: tests.test_client_process -*-
"""
C{import logio.auto}: publish every record that reaches the root logger to
C{LOGIO_URL}.

With C{LOGIO_URL} set, importing this module starts a L{LogioHandler} that
takes every record the root logger's handlers would see (a record logged on
a logger whose chain propagates up to the root); C{LOGIO_LEVEL} (a level name
or number), if set, is the handler's level. With C{LOGIO_URL} unset it does
nothing. The root logger's own level is left alone, and Python's default for
it is WARNING.

The application's own output stays as it is without logio, as the Go client
keeps writing to stderr: the handler is not one of the root logger's
handlers, so C{logging.basicConfig} (before or after the import), the
module-level C{logging.warning()} and friends, and logging's last resort
behave as they would without it.  A C{logging.config.dictConfig} closes
every existing handler, this one too (unless it is incremental): that is
said once on stderr, with what to add to the configuration.

@var handler: the handler started, or C{None}.
"""

from __future__ import annotations

import atexit
import logging
import logging.config
import os
import sys
from typing import Any

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


class _AutoHandler(LogioHandler):
    """
    The handler C{logio.auto} starts: it says when a reconfiguration of
    logging closes it.
    """

    _exiting = False
    _told = False
    #: Whether it was closed: it takes no more records.
    closed = False

    def close(self) -> None:
        self.closed = True
        if not (self._exiting or self._told):
            self._told = True
            _say(
                "logio: logging was reconfigured and closed the handler of logio.auto: "
                f"records no longer go to {self.publisher.target.describe()}; add a "
                "LogioHandler to the configuration, e.g. "
                '"handlers": {"logio": {"class": "logio.LogioHandler"}} with it in the '
                "root's handlers"
            )
        super().close()


def _say(message: str) -> None:
    if sys.stderr is not None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _alsoTo(ours: _AutoHandler) -> None:
    """
    Give C{ours} every record that reaches the root logger's handlers,
    after them, without being one of them.
    """
    callHandlers = logging.Logger.callHandlers

    def callHandlersAndLogio(self: logging.Logger, record: logging.LogRecord) -> None:
        callHandlers(self, record)
        logger: Any = self
        while logger is not logging.root:
            if logger is None or not logger.propagate:
                return
            logger = logger.parent
        if record.levelno >= ours.level and not ours.closed:
            ours.handle(record)

    logging.Logger.callHandlers = callHandlersAndLogio  # type: ignore[method-assign]


def _exiting() -> None:
    # Registered after logging's own shutdown, so it runs first (atexit
    # runs last-registered first): the closes that follow are the exit's.
    if handler is not None:
        handler._exiting = True


def _attach() -> _AutoHandler | None:
    """
    Attach the handler if C{LOGIO_URL} is set.
    """
    url = os.environ.get("LOGIO_URL")
    if not url:
        return None
    level = _level(os.environ.get("LOGIO_LEVEL") or "NOTSET")
    new = _AutoHandler(url)
    new.setLevel(level)
    _alsoTo(new)
    atexit.register(_exiting)
    return new


handler = _attach()
