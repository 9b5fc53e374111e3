"""Waiting for a condition, bounded in time: the one polling loop of the demo, the bench and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    interval: float = 0.05,
    error: type[Exception] = TimeoutError,
) -> Any:
    """Poll ``check`` until it returns something truthy, and return that; after ``timeout``
    seconds raise ``error`` saying what was waited for and what ``check`` last returned."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)
