# -*- test-case-name: tests.test_client_process -*-
"""
What the client does for its publishers at the process's turning points:
at exit, each gets its flush timeout and says what was lost; after a fork,
each starts over in the child.
"""

from __future__ import annotations

import atexit
import os
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from logio.client.publisher import Publisher


def register(publisher: Publisher) -> None:
    """
    Flush C{publisher} at exit, and start it over in a forked child.
    """
    _live.add(publisher)


_live: weakref.WeakSet[Publisher] = weakref.WeakSet()


def _close_all() -> None:
    """
    At exit: give every publisher its flush_timeout, all counted from now,
    and say what was lost: records dropped from a full queue, and records
    still unsent when the time was up.
    """
    start = time.monotonic()
    for publisher in list(_live):
        if publisher._closed:
            continue
        unsent = publisher.close(max(start + publisher.flush_timeout - time.monotonic(), 0))
        dropped = publisher.dropped_total
        if unsent or dropped:
            publisher.report(
                f"logio: exiting with records lost for {publisher.target.describe()}: "
                f"{dropped} dropped (the queue was full) and {unsent} not sent "
                "(server unreachable or too slow)"
            )


def _after_fork_in_child() -> None:
    """
    After C{os.fork()}: each publisher starts over in the child.
    """
    for publisher in list(_live):
        publisher._after_fork()


def _flushMultiprocessingChild(anchor: object) -> None:
    """
    In a child started by C{multiprocessing} with fork: such a child ends
    with C{os._exit}, so no C{atexit} flush runs; its exit finalizers do.
    """
    from multiprocessing import util

    util.Finalize(None, _close_all, exitpriority=0)


class _Anchor:
    """
    What C{multiprocessing.util.register_after_fork} keeps a weak reference to.
    """


_ANCHOR = _Anchor()
atexit.register(_close_all)
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)
    from multiprocessing import util as _multiprocessing

    _multiprocessing.register_after_fork(_ANCHOR, _flushMultiprocessingChild)
