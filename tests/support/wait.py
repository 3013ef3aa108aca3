"""Wait for a condition instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_for(cond: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.02, what: str = "") -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what or cond}")
        time.sleep(interval_s)


async def async_wait_for(cond: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.01, what: str = "") -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what or cond}")
        await asyncio.sleep(interval_s)
