"""Tracked action tasks: each action runs on its own, a failure never blocks the others and is reported once
to a fault callback (the engine turns it into a local fault event), never raised into the rule engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from structlog.typing import FilteringBoundLogger

FaultSink = Callable[[str, str, BaseException], Awaitable[None] | None]


class ActionTasks:
    def __init__(self, log: FilteringBoundLogger, on_fault: FaultSink) -> None:
        self.log = log
        self._on_fault = on_fault
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters = {"started": 0, "failed": 0}

    def spawn(self, action: str, device_id: str, coro: Awaitable[Any]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._guard(action, device_id, coro), name=f"action:{action}:{device_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.counters["started"] += 1
        return task

    async def _guard(self, action: str, device_id: str, coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an action's failure must never reach the rule engine
            self.counters["failed"] += 1
            try:
                result = self._on_fault(action, device_id, exc)
                if asyncio.iscoroutine(result):
                    await result
            except Exception as sink_exc:  # noqa: BLE001 - reporting the fault failed too: log, go on
                self.log.error("action_fault_unreported", action=action, device_id=device_id, error=str(sink_exc))
            return None

    def pending(self) -> int:
        return len(self._tasks)

    async def wait(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def cancel(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
