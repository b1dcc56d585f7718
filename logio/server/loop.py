# -*- test-case-name: tests.test_loop -*-
"""
The reactor C{twistd logio} runs on where epoll exists (Linux): Twisted's
epoll reactor, less the logging context it sets up around every ready
socket.

Twisted's reactors call each ready socket's C{doRead} or C{doWrite} inside
C{twisted.python.log.callWithLogger}, which asks the connection for its log
prefix and copies the legacy logging context, so that a C{log.msg} made
from inside names the connection.  logio logs through
L{twisted.logger.Logger}, whose events do not use that context; with a
thousand publishers each writing a line at a time, setting it up took a
few percent of a core.

It also runs what asked to be run when a turn of the loop ends (see
L{LeanEPollReactor.callAtTurnEnd}) without a timed call for each turn.

Importing this module fails where there is no epoll.
"""

from __future__ import annotations

import errno
from typing import Callable, Optional

from twisted.internet.epollreactor import EPollReactor
from twisted.logger import Logger


class LeanEPollReactor(EPollReactor):
    """
    Twisted's epoll reactor, but a ready socket is read or written without
    the legacy logging context around it.  What C{doRead} and C{doWrite}
    raise is logged and their connection closed as before (by
    C{_doReadOrWrite}); anything else that goes wrong in serving one ready
    socket is logged here, and the others are still served.
    """

    log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self._turnEnd: list[Callable[[], object]] = []

    def callAtTurnEnd(self, call: Callable[[], object]) -> None:
        """
        Call C{call} when this turn of the loop ends: once the ready sockets
        of this poll are served, or, asked outside a poll (by a timed call),
        before the loop next waits.  As soon as C{callLater(0, call)}
        would, but without a timed call to make, sort and run.
        """
        self._turnEnd.append(call)

    def _endTurn(self) -> None:
        calls, self._turnEnd = self._turnEnd, []
        for call in calls:
            try:
                call()
            except Exception:
                self.log.failure("Ending a turn of the loop: {call} failed", call=call)

    def doPoll(self, timeout: Optional[float]) -> None:
        if self._turnEnd:
            # Asked by the timed calls just run: not after the wait.
            self._endTurn()
        try:
            ready = self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        dispatch = self._doReadOrWrite
        for fd, event in ready:
            # Gone if serving an earlier one of this poll closed it.
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                dispatch(selectable, fd, event)
            except Exception:
                self.log.failure("Serving {selectable} failed", selectable=selectable)
        if self._turnEnd:
            self._endTurn()

    doIteration = doPoll
