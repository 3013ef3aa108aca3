"""The ingest pipeline: what drivers emit, in arrival order, to the rules and the outbox.

Events (smoke, gas, faults) overtake readings: two queues, events always drained first. A Reading
goes to the outbox's group commit and to the rules; an Event is committed durably (FULL) as an
event record while the rules act on it (the sounder does not wait for the fsync).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

from structlog.typing import FilteringBoundLogger

from gateway.livestate import LiveState
from gateway.model import Device, Event, Item, Reading, RecordClass

READING_BACKLOG_MAX = 100_000  # ~50 s at 2,000 readings/s: beyond it the outbox is not keeping up


class ItemScreen(Protocol):
    """A commissioning walk test (gateway/commission/walk.py): may re-tag a test press as a TEST event."""

    def screen(self, item: Item) -> Item: ...


def event_body(ev: Event, device: Device | None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": str(ev.kind), "code": ev.code, "via": ev.via}
    if ev.detail:
        body["detail"] = dict(ev.detail)
    if device is not None:
        body["type"] = str(device.type)
        body["location"] = {"building": device.location.building, "unit": device.location.unit, "room": device.location.room}
        body["resident"] = str(device.resident)
    return body


class Pipeline:
    def __init__(self, outbox: Any, rules: Any, devices: dict[str, Device], log: FilteringBoundLogger) -> None:
        self.outbox = outbox
        self.rules = rules
        self.devices = devices
        self.log = log.bind(stage="pipeline")
        self._events: deque[Event] = deque()
        self._readings: deque[Reading] = deque()
        self._wakeup = asyncio.Event()
        self.counters = {"events": 0, "readings": 0, "readings_dropped": 0, "unknown_device": 0}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.live = LiveState(devices)
        self.walk: ItemScreen | None = None  # set by the control API's walk_start, cleared by walk_stop

    def emit(self, item: Item) -> None:
        """Drivers' `emit`: never blocks, never raises."""
        if item.device_id not in self.devices:
            # Drivers only emit for configured devices; anything else is a bug upstream: count, do not store.
            self.counters["unknown_device"] += 1
            return
        self.live.observe(item)
        if self.walk is not None:
            item = self._screen(self.walk, item)
        if isinstance(item, Event):
            self._events.append(item)
        else:
            if len(self._readings) >= READING_BACKLOG_MAX:
                self.counters["readings_dropped"] += 1
                return
            self._readings.append(item)
        self._wakeup.set()

    def _screen(self, walk: ItemScreen, item: Item) -> Item:
        # A fault in the walk test must never cost an alarm: the item passes on unchanged.
        try:
            return walk.screen(item)
        except Exception as exc:  # noqa: BLE001 - commissioning is never a precondition of the alarm path
            self.counters["walk_errors"] = self.counters.get("walk_errors", 0) + 1
            self.log.error("walk_screen_failed", device_id=item.device_id, error=repr(exc)[:200])
            return item

    def backlog(self) -> int:
        return len(self._events) + len(self._readings)

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._events or self._readings:
                if self._events:
                    await self._handle_event(self._events.popleft())
                    continue
                reading = self._readings.popleft()
                self.counters["readings"] += 1
                self.outbox.put_reading(reading)
                if self.rules is not None:
                    await self.rules.on_item(reading)
                if not self._events and len(self._readings) % 256 == 0:
                    await asyncio.sleep(0)  # let drivers run during a long backlog

    async def _handle_event(self, ev: Event) -> None:
        self.counters["events"] += 1
        device = self.devices.get(ev.device_id)
        # The durable commit runs beside the rules, so the sounder never waits for the fsync.
        commit = asyncio.create_task(self._commit_event(ev, device))
        self._tasks.add(commit)
        commit.add_done_callback(self._tasks.discard)
        if self.rules is not None:
            await self.rules.on_item(ev)

    async def _commit_event(self, ev: Event, device: Device | None) -> None:
        try:
            await self.outbox.put(RecordClass.EVENT, f"event.{ev.kind}", ev.device_id, ev.stamp, event_body(ev, device))
        except Exception as exc:  # noqa: BLE001 - the store already retried; log with context and carry on
            self.log.error("event_commit_failed", device_id=ev.device_id, kind=str(ev.kind), error=str(exc))

    async def drain(self, timeout_s: float = 2.0) -> None:
        """On stop: hand what is queued to the outbox before it closes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (self._events or self._readings) and loop.time() < deadline:
            self._wakeup.set()
            await asyncio.sleep(0.01)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=max(0.1, deadline - loop.time()))
