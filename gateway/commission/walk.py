"""The walk test (issue 18): while an installer goes door to door pressing each detector's test button,
the pipeline hands every item to a WalkSession, which ticks the device off and tags the press as a
test, so it raises no alarm, sends no SMS and reaches the platform only as an `event.test` record.

What ticks a device: a self-reporting sensor (heartbeat_s > 0: LoRa, NB-IoT) needs its test press (a
TEST event; for a sensor whose profile has no test event, an ALARM, which is how a flow switch is tested
by opening the riser's test valve and a manhole sensor by lifting the cover); a polled device (Modbus)
ticks on any answer.

Safety (CLARIFICATIONS Turn 2, the local alarm path wins): an alarm is tagged only for a device whose
test *is* an alarm (`test_by_alarm`: no test event in its profile), and only its first alarm plus
repeats within PRESS_GRACE_S. A smoke or gas detector reports its test button as a TEST event, so its
alarm during a walk is always real: a fire in a flat the installer has not reached yet still sounds
and texts. A later alarm of a device already ticked, or of a device outside the walk's building, is
real too. The session ends by itself at its deadline or once every device has been ticked (after the
grace period), whichever comes first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.livestate import BATTERY_KEYS, SIGNAL_KEYS
from gateway.model import Device, Event, EventKind, Item, Reading, Value

PRESS_GRACE_S = 60.0  # frames of the same press (repeats, the alarm then its clearing) within this are the test
DEFAULT_DURATION_S = 3600.0
MAX_DURATION_S = 4 * 3600.0
WALK_CODE = "walk"


@dataclass
class Tick:
    how: str  # "test_button" | "alarm_as_test" | "answered"
    wall_s: float
    mono_s: float
    signal: dict[str, Value] = field(default_factory=dict)
    battery: Value | None = None


def needs_press(device: Device) -> bool:
    return device.heartbeat_s > 0


class WalkSession:
    """One walk over `scope` (all devices, or one building's). Sans-IO: times come from the items."""

    def __init__(self, devices: dict[str, Device], building: str | None, duration_s: float, now_mono: float,
                 now_wall: float, started_by: str, test_by_alarm: frozenset[str] = frozenset()) -> None:
        self.scope = {d: dev for d, dev in devices.items() if building is None or dev.location.building == building}
        self.test_by_alarm = test_by_alarm  # devices whose test press reports as an alarm (no test event)
        self.building = building
        self.started_mono, self.started_wall = now_mono, now_wall
        self.deadline_mono = now_mono + duration_s
        self.started_by = started_by
        self.ticks: dict[str, Tick] = {}
        self.tagged = 0
        self.ended_mono: float | None = None
        self.end_reason = ""

    # ---- state ----------------------------------------------------------------------------------
    def active(self, now_mono: float) -> bool:
        if self.ended_mono is not None:
            return False
        if now_mono >= self.deadline_mono:
            self.end(min(now_mono, self.deadline_mono), "time_up")
            return False
        if len(self.ticks) == len(self.scope) and all(now_mono - t.mono_s > PRESS_GRACE_S for t in self.ticks.values()):
            self.end(now_mono, "all_ticked")
            return False
        return True

    def end(self, now_mono: float, reason: str) -> None:
        if self.ended_mono is None:
            self.ended_mono, self.end_reason = now_mono, reason

    # ---- the pipeline's hook --------------------------------------------------------------------
    def screen(self, item: Item) -> Item:
        """The item to pass on: unchanged, or a test press re-tagged as a TEST event."""
        device = self.scope.get(item.device_id)
        now = item.stamp.mono_ns / 1e9
        if device is None or not self.active(now):
            return item
        tick = self.ticks.get(item.device_id)
        if tick is not None:
            self._update_signal(tick, item)
        if isinstance(item, Reading):
            if tick is None and not needs_press(device):
                self._tick(item, "answered")
            return item
        if item.kind == EventKind.TEST:
            if tick is None:
                self._tick(item, "test_button")
            return item
        if item.kind != EventKind.ALARM or item.device_id not in self.test_by_alarm:
            return item  # a detector with a test button: its alarm is a real alarm, walk or not
        if tick is None:
            tick = self._tick(item, "alarm_as_test")
        elif now - tick.mono_s > PRESS_GRACE_S:
            return item  # a second alarm long after the press: real
        self.tagged += 1
        detail: dict[str, Value] = {**item.detail, "walk": True, "original_kind": str(item.kind), "original_code": item.code}
        return Event(item.device_id, EventKind.TEST, item.stamp, code=WALK_CODE, detail=detail, via=item.via)

    def _tick(self, item: Item, how: str) -> Tick:
        tick = Tick(how, item.stamp.wall_s, item.stamp.mono_ns / 1e9)
        self._update_signal(tick, item)
        self.ticks[item.device_id] = tick
        return tick

    @staticmethod
    def _update_signal(tick: Tick, item: Item) -> None:
        values = item.values if isinstance(item, Reading) else item.detail
        tick.signal.update({k: values[k] for k in SIGNAL_KEYS if k in values})
        battery = next((values[k] for k in BATTERY_KEYS if k in values), None)
        if battery is not None:
            tick.battery = battery

    # ---- the installer's report -----------------------------------------------------------------
    def report(self, now_mono: float, live_rows: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Per building and flat: each device ticked or not, with signal and battery (from the press, or
        the last frame the daemon saw), counts done/left. Stable JSON (docs/CLI.md)."""
        active = self.active(now_mono)
        live_rows = live_rows or {}
        buildings: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for dev_id, dev in sorted(self.scope.items(), key=lambda kv: _place_key(kv[1])):
            tick, live = self.ticks.get(dev_id), live_rows.get(dev_id, {})
            flat = dev.location.label().removeprefix(f"{dev.location.building}栋") if dev.location.building else ""
            row: dict[str, Any] = {
                "id": dev_id, "type": str(dev.type), "needs": "test_button" if needs_press(dev) else "answer",
                "ticked": tick is not None, "how": tick.how if tick else None, "at_wall": tick.wall_s if tick else None,
                "signal": (tick.signal if tick and tick.signal else live.get("signal")) or {},
                "battery": tick.battery if tick and tick.battery is not None else live.get("battery"),
            }
            buildings.setdefault(dev.location.building or "-", {}).setdefault(flat or "-", []).append(row)
        done = len(self.ticks)
        end = self.ended_mono if self.ended_mono is not None else now_mono
        return {
            "active": active, "building": self.building, "started_wall": self.started_wall, "started_by": self.started_by,
            "elapsed_s": round(end - self.started_mono, 1), "left_s": round(max(0.0, self.deadline_mono - now_mono), 1) if active else 0.0,
            "end_reason": self.end_reason or None, "total": len(self.scope), "done": done, "left": len(self.scope) - done,
            "tagged_as_test": self.tagged,
            "buildings": [{"building": b, "flats": [{"flat": f, "devices": rows} for f, rows in flats.items()]}
                          for b, flats in buildings.items()],
        }


def _place_key(dev: Device) -> tuple[Any, ...]:
    loc = dev.location
    return (not loc.building, _natural(loc.building), _natural(loc.unit), _natural(loc.room), dev.id)


def _natural(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 30, text)
