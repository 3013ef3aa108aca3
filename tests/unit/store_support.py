"""Test parts for the outbox: build a real Outbox on a tmp file, readings and stamps made to order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from gateway.clock import ManualClock
from gateway.config.schema import Store
from gateway.model import Reading, RecordClass
from gateway.store.outbox import Outbox

ALL = set(RecordClass)


def store_cfg(path: Path, **over: Any) -> Store:
    base: dict[str, Any] = {"path": str(path), "commit_interval_s": 0.05, "ballast_bytes": 64 * 1024}
    base.update(over)
    return Store(**base)


def make_outbox(path: Path, clock: ManualClock | None = None, consumers: dict[str, set[RecordClass]] | None = None, **over: Any) -> Outbox:
    return Outbox(store_cfg(path, **over), clock or ManualClock(), structlog.get_logger(), consumers or {"mqtt": ALL})


def reading(clock: ManualClock, device: str = "pump-1", **values: Any) -> Reading:
    return Reading(device, clock.now(), values or {"pressure_mpa": 0.31}, "modbus_rtu")


async def put_readings(ob: Outbox, clock: ManualClock, n: int, device: str = "pump-1", step_s: float = 0.0) -> None:
    """n readings with value i, committed before returning."""
    for i in range(n):
        ob.put_reading(reading(clock, device, i=i))
        if step_s:
            clock.advance(step_s)
    await ob.flush()


def drain(ob: Outbox, consumer: str = "mqtt", limit: int = 100_000) -> list:
    return ob.fetch(consumer, limit)
