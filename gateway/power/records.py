"""PowerEvent -> outbox record: the small adapter the daemon passes as the monitor's `on_change`.

Power events are gateway-level (device = gateway id), class EVENT, kind "event.power": the MQTT uplink
sends them on `cg/v1/<id>/event`, the GB/T 26875.3 uplink maps them to the type 21 state byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from gateway.model import RecordClass, Stamp
from gateway.power.state import PowerEvent

KIND = "event.power"


class RecordSink(Protocol):
    async def put(self, cls: RecordClass, kind: str, device: str, stamp: Stamp, body: dict[str, Any]) -> int: ...


class PowerRecords:
    """`await PowerRecords(outbox, gateway_id)(event)`; optional `also` callables see every event too
    (the switchover test watcher, a status refresh)."""

    def __init__(self, outbox: RecordSink, gateway_id: str, also: list[Callable[[PowerEvent], None]] | None = None) -> None:
        self.outbox = outbox
        self.gateway_id = gateway_id
        self.also = list(also or [])

    async def __call__(self, event: PowerEvent) -> None:
        for fn in self.also:
            fn(event)
        await self.outbox.put(RecordClass.EVENT, KIND, self.gateway_id, event.stamp, event.body())
