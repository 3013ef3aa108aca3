"""Tests an inspector asks for: a simulated fire alarm marked as a test end to end, and a power switchover.

`fire_test` injects a detector alarm carrying detail {"test": true} into the pipeline, so the real path
runs (rules, sounder, SMS, platform, centre) and every consumer can tell it is a test: the platform sees
detail.test on the event and the alarm, the centre a type 2 frame in test mode (b0 = 0), SMS says 【测试】.
`power_test` waits for the UPS to go on battery and back while someone pulls and restores mains.
Both are recorded: outbox EVENT "event.test" (the platform) and the journal (`gateway tests`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.errors import CommandRejected
from gateway.model import Device, DeviceType, Event, EventKind, Item, RecordClass, Value
from gateway.power.records import RecordSink
from gateway.power.state import Condition, PowerEvent
from gateway.selfcheck.config import SelfCheckSection
from gateway.selfcheck.journal import Entry, Journal

KIND = "event.test"
FIRE_CODES = {DeviceType.SMOKE: "smoke", DeviceType.GAS: "gas_high"}


class Inspections:
    def __init__(self, cfg: SelfCheckSection, clock: Any, log: Any, journal: Journal, records: RecordSink | None,
                 gateway_id: str, emit: Callable[[Item], None], devices: dict[str, Device], has_ups: bool) -> None:
        self.cfg = cfg
        self.clock = clock
        self.log = log.bind(component="inspections") if hasattr(log, "bind") else log
        self.journal = journal
        self.records = records
        self.gateway_id = gateway_id
        self.emit = emit
        self.devices = devices
        self.has_ups = has_ups
        self.power_test: dict[str, Any] | None = None  # the running or last switchover test
        self._power_seen = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- fire ----------------------------------------------------------------------------------
    async def fire_test(self, device_id: str | None, by: str) -> dict[str, Any]:
        device = self._fire_device(device_id)
        code = FIRE_CODES[device.type]
        detail: dict[str, Value] = {"test": True, "by": by}
        self.emit(Event(device.id, EventKind.ALARM, self.clock.now(), code=code, detail=detail, via="test"))
        task = asyncio.get_running_loop().create_task(self._clear_later(device.id, code, detail))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.log.warning("fire_test_started", device_id=device.id, by=by)
        result = {"kind": "fire_test", "device": device.id, "code": code, "by": by,
                  "clear_after_s": self.cfg.fire_test_clear_after_s}
        await self._record("fire_test", True, by, f"simulated {code} alarm on {device.id}", device.id, result)
        return result

    def _fire_device(self, device_id: str | None) -> Device:
        if device_id:
            device = self.devices.get(device_id)
            if device is None:
                raise CommandRejected("unknown_device", f"no device {device_id!r} in this gateway's config")
            if device.type not in FIRE_CODES:
                raise CommandRejected("not_fire_device", f"{device_id} is a {device.type}, not a smoke or gas detector")
            return device
        for device in self.devices.values():
            if device.type in FIRE_CODES:
                return device
        raise CommandRejected("no_fire_device", "no smoke or gas detector is configured")

    async def _clear_later(self, device_id: str, code: str, detail: dict[str, Value]) -> None:
        await asyncio.sleep(self.cfg.fire_test_clear_after_s)
        self.emit(Event(device_id, EventKind.ALARM_CLEARED, self.clock.now(), code=code, detail=detail, via="test"))

    # ---- power switchover ----------------------------------------------------------------------
    def on_power_event(self, event: PowerEvent) -> None:
        """Every PowerEvent (PowerRecords(also=[...])): a running switchover test watches them."""
        test = self.power_test
        if test is None or test["state"] != "running" or event.condition != Condition.ON_BATTERY:
            return
        key = "on_battery_wall_s" if event.active else "on_mains_wall_s"
        if event.active or test.get("on_battery_wall_s") is not None:
            test[key] = event.stamp.wall_s
            test["charge_pct"] = event.charge_pct
            self._power_seen.set()

    async def power_test_start(self, by: str, window_s: float | None = None) -> dict[str, Any]:
        if not self.has_ups:
            raise CommandRejected("no_ups", "no UPS is configured ([power] ups): there is no switchover to test")
        if self.power_test is not None and self.power_test["state"] == "running":
            raise CommandRejected("busy", "a switchover test is already running")
        window = window_s or self.cfg.power_test_window_s
        self.power_test = {"kind": "power_test", "state": "running", "by": by, "started_wall_s": self.clock.wall(),
                           "window_s": window, "on_battery_wall_s": None, "on_mains_wall_s": None, "charge_pct": None}
        self._power_seen.clear()
        task = asyncio.get_running_loop().create_task(self._watch_power(window))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.log.warning("power_test_started", by=by, window_s=window)
        return dict(self.power_test)

    def power_test_status(self) -> dict[str, Any]:
        if self.power_test is None:
            raise CommandRejected("no_power_test", "no switchover test has been started since the daemon started")
        return dict(self.power_test)

    async def _watch_power(self, window_s: float) -> None:
        test = self.power_test
        assert test is not None
        deadline = self.clock.monotonic() + window_s
        while test["on_mains_wall_s"] is None and self.clock.monotonic() < deadline:
            self._power_seen.clear()
            try:
                async with asyncio.timeout(max(0.0, deadline - self.clock.monotonic())):  # not wait_for (3.11)
                    await self._power_seen.wait()
            except TimeoutError:
                break
        went, back = test["on_battery_wall_s"], test["on_mains_wall_s"]
        ok = went is not None and back is not None
        test["state"] = "passed" if ok else "failed"
        test["summary"] = (f"switched to battery and back to mains after {back - went:.0f} s" if ok else
                           "mains did not come back within the window" if went is not None else
                           "no switch to battery seen: was mains cut?")
        await self._record("power_test", ok, test["by"], test["summary"], "", dict(test))

    async def _record(self, kind: Any, ok: bool, by: str, summary: str, device: str, detail: dict[str, Any]) -> None:
        try:
            self.journal.append(Entry(kind=kind, wall_s=self.clock.wall(), ok=ok, by=by, summary=summary,
                                      device=device, detail=detail))
        except OSError as exc:
            self.log.error("test_not_journalled", error=str(exc))
        if self.records is not None:
            body = {"kind": kind, "ok": ok, "by": by, "summary": summary, "device": device, "detail": detail}
            try:
                await self.records.put(RecordClass.EVENT, KIND, self.gateway_id, self.clock.now(), body)
            except Exception as exc:  # noqa: BLE001 - the journal has it; the store fault has its own check
                self.log.error("test_not_recorded", error=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
