"""``until``: the one bounded wait the tests share (conditions, never timings)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
          interval: float = 0.01) -> Any:
    """``pred()``'s first truthy value, asked every ``interval`` s; an AssertionError naming
    ``what`` once ``timeout`` s have passed without one."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not met within {timeout} s")
        time.sleep(interval)
