"""
Waiting for what other threads and processes do: how long at most, and
polling until a condition holds.
"""

from __future__ import annotations

import time
from typing import Callable

#: Seconds to wait for a server, a subprocess or a condition.
TIMEOUT = 20.0


def waitFor(
    condition: Callable[[], object], timeout: float = TIMEOUT, what: str = "a condition"
) -> object:
    """
    Poll C{condition} until it returns something true; fail after
    C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
