"""Poll for a state instead of sleeping to order events: a fixed sleep either wastes time or,
on a loaded machine, is too short and the test lies."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0, every: float = 0.001):
    """Call `condition` until it returns something truthy and return that; AssertionError naming
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)  # a polling interval, not an ordering
