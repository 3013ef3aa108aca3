"""Supervised tasks: a driver (or any stage) that raises is logged with context and restarted with
capped exponential backoff and full jitter, never taking down the daemon or its siblings.

The only place that catches Exception. Cancellation is the stop signal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from structlog.typing import FilteringBoundLogger

from gateway.clock import Backoff, Clock

__all__ = ["Backoff", "Supervised", "Supervisor"]  # Backoff: re-exported, it lives in gateway.clock


class Supervised:
    """One supervised coroutine factory and its restart history."""

    def __init__(self, name: str, factory: Callable[[], Awaitable[Any]], log: FilteringBoundLogger, clock: Clock,
                 base_s: float, cap_s: float, healthy_after_s: float) -> None:
        self.name = name
        self.factory = factory
        self.log = log.bind(task=name)
        self.clock = clock
        self.backoff = Backoff(base_s, cap_s)
        self.healthy_after_s = healthy_after_s
        self.restarts = 0
        self.last_error = ""
        self.task: asyncio.Task[None] | None = None
        self._crashed_at: float | None = None
        self._started_at = 0.0

    def failing(self) -> bool:
        """Crashed, and not yet run for healthy_after_s since: a subsystem that is down (trouble)."""
        if self._crashed_at is None:
            return False
        return self._started_at <= self._crashed_at or self.clock.monotonic() - self._started_at < self.healthy_after_s

    async def run(self) -> None:
        while True:
            started = self._started_at = self.clock.monotonic()
            try:
                await self.factory()
                # A stage that returns on its own is finished (e.g. nothing configured); do not spin.
                self.log.info("task_finished")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the supervisor is the one place that catches everything
                if self.clock.monotonic() - started >= self.healthy_after_s:
                    self.backoff.reset()  # it ran fine for a while: this is a new failure, not a crash loop
                delay = self.backoff.next_delay()
                self.restarts += 1
                self._crashed_at = self.clock.monotonic()
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.log.error("task_crashed", error=self.last_error, restart_in_s=round(delay, 2), restarts=self.restarts, exc_info=exc)
                await asyncio.sleep(delay)


class Supervisor:
    """Owns every long-running task of the daemon; keeps a reference to each."""

    def __init__(self, log: FilteringBoundLogger, clock: Clock, base_s: float = 1.0, cap_s: float = 60.0, healthy_after_s: float = 60.0) -> None:
        self.log = log
        self.clock = clock
        self.base_s = base_s
        self.cap_s = cap_s
        self.healthy_after_s = healthy_after_s
        self.items: dict[str, Supervised] = {}

    def start(self, name: str, factory: Callable[[], Awaitable[Any]]) -> Supervised:
        item = Supervised(name, factory, self.log, self.clock, self.base_s, self.cap_s, self.healthy_after_s)
        item.task = asyncio.create_task(item.run(), name=name)
        self.items[name] = item
        return item

    async def stop(self, names: list[str] | None = None, timeout_s: float = 3.0) -> None:
        """Cancel the named tasks (all by default) in the given order, waiting for each to clean up."""
        for name in names if names is not None else list(reversed(self.items)):
            item = self.items.get(name)
            if item is None or item.task is None or item.task.done():
                continue
            item.task.cancel()
            done, _ = await asyncio.wait({item.task}, timeout=timeout_s)
            if not done:
                self.log.warning("task_stop_timeout", task=name, timeout_s=timeout_s)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {n: {"restarts": i.restarts, "last_error": i.last_error, "running": bool(i.task and not i.task.done()),
                    "failing": i.failing()} for n, i in self.items.items()}
