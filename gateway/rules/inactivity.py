"""`inactivity` rules (issue 22): a resident living alone shows no sign of activity for window_h hours of
active hours -> a welfare alarm for the flat; the next activity clears it. Away mode per flat, quiet hours.

Devices are grouped into flats by location (building, unit, room); the alarm is raised on the flat's first
source device. A source that is offline (its own offline event, or silent for 2 x heartbeat + grace) is a
device fault, which the `offline` rule reports: it never becomes "no activity", so while any source of a
flat is offline its welfare alarm is held back. Durations are monotonic; only the hour-of-day tests
(active hours, quiet hours) read the wall clock, and with an unsynced clock every hour counts.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.clock import Clock
from gateway.model import Device, Event, EventKind, Item, Reading, replay_suspect
from gateway.rules.match import Signal, number, selects
from gateway.rules.schema import InactivityRule, Source

NOT_ACTIVITY = frozenset({EventKind.HEARTBEAT, EventKind.OFFLINE, EventKind.ONLINE, EventKind.SECURITY})
MAX_SPAN_S = 31 * 86400.0  # active-hours integration never looks further back than this
WATER_SAMPLES_MAX = 512  # a meter reporting every 2 min for 12 h fits
# The engine ticks every 0.25 s; windows are hours. Checking every 10 s costs nothing measurable (a check of
# 200 flats with active hours takes 3.5 ms on x86, ~15 ms on a Pi) and is at most 10 s late.
CHECK_PERIOD_S = 10.0


def flat_key(device: Device) -> str:
    """The flat a device belongs to, as the away command names it: "2-1-401" (building-unit-room)."""
    loc = device.location
    return "-".join((loc.building, loc.unit, loc.room))


def parse_hours(text: str) -> tuple[int, int]:
    """"07:00-22:00" -> (420, 1320) minutes of the local day; start > end wraps past midnight."""
    a, b = text.split("-")
    return int(a[:2]) * 60 + int(a[3:]), int(b[:2]) * 60 + int(b[3:])


def in_hours(wall_s: float, hours: tuple[int, int], tz: zoneinfo.ZoneInfo) -> bool:
    t = datetime.datetime.fromtimestamp(wall_s, tz)
    minute = t.hour * 60 + t.minute
    start, end = hours
    return start <= minute < end if start <= end else (minute >= start or minute < end)


def active_seconds(t0: float, t1: float, hours: tuple[int, int], tz: zoneinfo.ZoneInfo) -> float:
    """Seconds of [t0, t1] (wall) that fall inside the daily active hours, local time."""
    start, end = hours
    if (start, end) == (0, 1440):
        return max(0.0, t1 - t0)
    t0 = max(t0, t1 - MAX_SPAN_S)
    spans = [(start, end)] if start <= end else [(0, end), (start, 1440)]
    total = 0.0
    day = datetime.datetime.fromtimestamp(t0, tz).date() - datetime.timedelta(days=1)
    last = datetime.datetime.fromtimestamp(t1, tz).date()
    while day <= last:
        midnight = datetime.datetime.combine(day, datetime.time(), tz).timestamp()
        for a, b in spans:
            lo, hi = max(t0, midnight + a * 60), min(t1, midnight + b * 60)
            total += max(0.0, hi - lo)
        day += datetime.timedelta(days=1)
    return total


@dataclass
class _Flat:
    key: str
    anchor: str  # the device the welfare alarm is raised on
    devices: list[Device]
    last_activity: float  # monotonic
    last_source: str = "start"
    active: bool = False
    offline: set[str] = field(default_factory=set)  # by the devices' own offline events
    last_frame: dict[str, float] = field(default_factory=dict)
    values: dict[tuple[str, str], Any] = field(default_factory=dict)  # (device, field) -> last value
    water: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)  # device -> (mono, litres)


class InactivityEvaluator:
    def __init__(self, rule: InactivityRule, devices: list[Device], now: float, clock: Clock | None = None) -> None:
        self.rule = rule
        self.clock = clock
        self.tz = zoneinfo.ZoneInfo(rule.timezone)
        self.active_hours = parse_hours(rule.active_hours)
        self.quiet_hours = parse_hours(rule.quiet_hours) if rule.quiet_hours else None
        self.away: dict[str, float] = {}  # flat -> wall time the resident is back (away mode)
        self.flats: dict[str, _Flat] = {}
        self._flat_of: dict[str, _Flat] = {}
        for d in devices:
            if not any(selects(s, d) for s in rule.sources):
                continue
            flat = self.flats.get(flat_key(d))
            if flat is None:
                # A restart is not evidence of inactivity: every flat gets a full window after start.
                flat = self.flats[flat_key(d)] = _Flat(flat_key(d), d.id, [], now)
            flat.devices.append(d)
            flat.last_frame[d.id] = now
            self._flat_of[d.id] = flat
        self.counters = {"held_offline": 0, "held_away": 0, "held_quiet": 0}
        self._checked = float("-inf")

    # ---- input ----------------------------------------------------------------------------------------
    def on_item(self, item: Item, device: Device, now: float) -> list[Signal]:
        flat = self._flat_of.get(item.device_id)
        if flat is None or replay_suspect(item):
            return []  # a replayed recording is neither activity nor a sign of life
        flat.last_frame[item.device_id] = now
        if isinstance(item, Event) and item.kind == EventKind.OFFLINE:
            flat.offline.add(item.device_id)
            return []
        flat.offline.discard(item.device_id)
        what = next((w for s in self.rule.sources if selects(s, device) and (w := self._activity(s, flat, item, now))), "")
        if not what:
            return []
        flat.last_activity, flat.last_source = now, f"{item.device_id}:{what}"
        if flat.active:
            flat.active = False
            return [Signal(False, flat.anchor, {"flat": flat.key, "activity": flat.last_source}, item.stamp)]
        return []

    def _activity(self, s: Source, flat: _Flat, item: Item, now: float) -> str:
        if s.activity == "frame":
            return "frame" if not (isinstance(item, Event) and item.kind in NOT_ACTIVITY) else ""
        if s.activity == "event":
            if not isinstance(item, Event) or item.kind in NOT_ACTIVITY:
                return ""
            ok = (not s.events or item.kind in s.events) and (not s.codes or item.code in s.codes)
            return str(item.kind) if ok else ""
        if not isinstance(item, Reading) or s.field is None or s.field not in item.values:
            return ""
        if s.activity == "change":
            key = (item.device_id, s.field)
            before, flat.values[key] = flat.values.get(key), item.values[s.field]
            return s.field if before is not None and before != item.values[s.field] else ""
        return self._volume(s, flat, item, now)

    def _volume(self, s: Source, flat: _Flat, item: Reading, now: float) -> str:
        """A cumulative meter: activity when it rose by min_l litres within the volume window."""
        v = number(item.values, s.field or "")
        if v is None:
            return ""
        litres = v * s.litres_per_unit
        hist = flat.water.setdefault(item.device_id, deque(maxlen=WATER_SAMPLES_MAX))
        if hist and litres < hist[-1][1]:
            hist.clear()  # meter replaced or counter reset: a new baseline, never negative use
        window_s = (s.volume_window_h or self.rule.window_h) * 3600
        while hist and now - hist[0][0] > window_s:
            hist.popleft()
        hist.append((now, litres))
        used = litres - hist[0][1]
        if used < s.min_l:
            return ""
        hist.clear()
        hist.append((now, litres))  # the next activity needs another min_l
        return f"water {used:.0f} L"

    # ---- timers ---------------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Signal]:
        if now - self._checked < CHECK_PERIOD_S:
            return []
        self._checked = now
        clock = self.clock
        wall = clock.wall() if clock is not None else None
        synced = clock is not None and clock.synced()
        out: list[Signal] = []
        for flat in self.flats.values():
            if flat.active:
                continue
            if wall is not None and self.away.get(flat.key, 0.0) > wall:
                flat.last_activity, flat.last_source = now, "away"  # the window starts afresh on return
                self.counters["held_away"] += 1
                continue
            if self._offline(flat, now):
                self.counters["held_offline"] += 1
                continue
            since = wall - (now - flat.last_activity) if wall is not None else None
            if since is not None and wall is not None and synced:
                quiet_s = active_seconds(since, wall, self.active_hours, self.tz)
            else:
                quiet_s = now - flat.last_activity
            if quiet_s < self.rule.window_h * 3600:
                continue
            if synced and wall is not None and self.quiet_hours is not None and in_hours(wall, self.quiet_hours, self.tz):
                self.counters["held_quiet"] += 1
                continue
            flat.active = True
            out.append(Signal(True, flat.anchor, self._detail(flat, since, quiet_s, now)))
        return out

    def _offline(self, flat: _Flat, now: float) -> bool:
        for d in flat.devices:
            if d.id in flat.offline:
                return True
            if d.heartbeat_s > 0 and now - flat.last_frame.get(d.id, now) > 2 * d.heartbeat_s + self.rule.grace_s:
                return True
        return False

    def _detail(self, flat: _Flat, since: float | None, quiet_s: float, now: float) -> dict[str, Any]:
        """The reason the alarm prints: which sources, since when, how long (issue 22)."""
        sources = [d.id for d in flat.devices]
        hours = round(quiet_s / 3600, 1)
        when = datetime.datetime.fromtimestamp(since, self.tz).strftime("%m-%d %H:%M") if since is not None else "?"
        detail: dict[str, Any] = {
            "flat": flat.key, "sources": sources, "since_wall_s": since, "inactive_h": hours,
            "last_activity": flat.last_source,
            "reason": f"自{when}起{hours}小时无活动（{'、'.join(sources)}）",
        }
        for dev, hist in flat.water.items():
            if hist:
                detail[f"water_l.{dev}"] = round(hist[-1][1] - hist[0][1], 1)
        return detail

    # ---- commands -------------------------------------------------------------------------------------
    def set_away(self, flat: str, until_wall: float) -> bool:
        """Away mode for a flat until a wall time (0 ends it). False when this rule does not watch the flat."""
        if flat not in self.flats:
            return False
        if until_wall > 0:
            self.away[flat] = until_wall
        else:
            self.away.pop(flat, None)
        return True

    def reset(self, device_id: str, now: float) -> None:
        flat = self._flat_of.get(device_id)
        if flat is not None:
            flat.active, flat.last_activity, flat.last_source = False, now, "cleared"

    def restore(self, device_id: str, now: float) -> None:
        flat = self._flat_of.get(device_id)
        if flat is not None and flat.anchor == device_id:
            flat.active = True
