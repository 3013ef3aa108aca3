"""What the daemon last saw of each device, for `gateway devices`, selftest and the walk test, kept in
memory and saved as a small JSON snapshot in the state directory so a restart does not forget it
(issue 18: with 12-24 h heartbeats a reboot otherwise lists most devices offline for a day).

The snapshot is cheap on an SD card: written only when something changed, at most every
SNAPSHOT_PERIOD_S and once at stop, atomically (temp file + rename). It is a convenience, never a
precondition: a read-only or full card only costs the snapshot, with one warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from gateway.model import Device, Event, EventKind, Item, Reading, Value

# Reading value keys that describe the radio link rather than the sensed world.
SIGNAL_KEYS = ("rssi_dbm", "snr_db", "csq", "rsrp_dbm")
BATTERY_KEYS = ("battery_pct", "battery_v")
RECENT_MAX = 10  # last frames per device kept for `gateway devices ID`
SNAPSHOT_PERIOD_S = 300.0  # one small write every 5 min at most (SD-card wear; the outbox is the history)
SNAPSHOT_VERSION = 1
SNAPSHOT_NAME = "livestate.json"


class WallClock(Protocol):
    def monotonic(self) -> float: ...
    def wall(self) -> float: ...


class DeviceLive:
    __slots__ = ("last_seen_mono", "last_seen_wall", "values", "state", "last_event", "frames", "recent", "signal_history", "restored")

    def __init__(self) -> None:
        self.last_seen_mono: float | None = None
        self.last_seen_wall: float | None = None
        self.values: dict[str, Value] = {}
        self.state = "unknown"  # unknown | online | offline
        self.last_event = ""
        self.frames = 0
        self.recent: deque[tuple[float, str]] = deque(maxlen=RECENT_MAX)  # (wall, "reading k=v" / "event kind:code")
        self.signal_history: deque[tuple[float, dict[str, Value]]] = deque(maxlen=RECENT_MAX)
        self.restored = False  # shown from the snapshot, not heard since this start

    def to_json(self) -> dict[str, Any]:
        return {"last_seen_wall": self.last_seen_wall, "values": self.values, "state": self.state,
                "last_event": self.last_event, "frames": self.frames, "recent": list(self.recent),
                "signal_history": list(self.signal_history)}


def _describe(item: Item) -> str:
    if isinstance(item, Reading):
        return "reading " + " ".join(f"{k}={v}" for k, v in list(item.values.items())[:6])
    return f"event {item.kind}" + (f":{item.code}" if item.code else "")


class LiveState:
    def __init__(self, devices: dict[str, Device]) -> None:
        self.devices = devices
        self.live = {d: DeviceLive() for d in devices}
        self.dirty = False

    def observe(self, item: Item) -> None:
        live = self.live.get(item.device_id)
        if live is None:
            return
        self.dirty = True
        live.restored = False
        if isinstance(item, Event) and item.kind == EventKind.OFFLINE:
            live.state = "offline"
            live.last_event = "offline"
            return
        live.last_seen_mono = item.stamp.mono_ns / 1e9
        live.last_seen_wall = item.stamp.wall_s
        live.frames += 1
        live.state = "online"
        live.recent.append((item.stamp.wall_s, _describe(item)))
        if isinstance(item, Reading):
            live.values.update(item.values)
            signal = {k: item.values[k] for k in SIGNAL_KEYS if k in item.values}
        else:
            live.last_event = f"{item.kind}{':' + item.code if item.code else ''}"
            signal = {k: v for k, v in item.detail.items() if k in SIGNAL_KEYS}
            for k, v in item.detail.items():
                if k in SIGNAL_KEYS or k in BATTERY_KEYS:
                    live.values[k] = v
        if signal:
            live.signal_history.append((item.stamp.wall_s, signal))

    def row(self, dev_id: str, now_mono: float) -> dict[str, Any]:
        dev, live = self.devices[dev_id], self.live[dev_id]
        return {
            "id": dev_id,
            "type": str(dev.type),
            "profile": dev.profile,
            "port": dev.port,
            "location": dev.location.label(),
            "resident": str(dev.resident),
            "state": live.state,
            "last_seen_age_s": None if live.last_seen_mono is None else round(now_mono - live.last_seen_mono, 1),
            "last_seen_wall": live.last_seen_wall,
            "battery": next((live.values[k] for k in BATTERY_KEYS if k in live.values), None),
            "signal": {k: live.values[k] for k in SIGNAL_KEYS if k in live.values},
            "values": {k: v for k, v in live.values.items() if k not in SIGNAL_KEYS},
            "last_event": live.last_event,
            "frames": live.frames,
            "heartbeat_s": dev.heartbeat_s,
            "restored": live.restored,
        }

    def rows(self, now_mono: float) -> list[dict[str, Any]]:
        return [self.row(dev_id, now_mono) for dev_id in self.devices]

    def history(self, dev_id: str) -> dict[str, Any]:
        live = self.live[dev_id]
        return {"recent": [{"wall": w, "what": s} for w, s in live.recent],
                "signal_history": [{"wall": w, **sig} for w, sig in live.signal_history]}

    # ---- snapshot --------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {"version": SNAPSHOT_VERSION, "devices": {d: live.to_json() for d, live in self.live.items() if live.last_seen_wall}}

    def restore(self, doc: dict[str, Any], clock: WallClock) -> int:
        """Take what a previous run saw; ages are re-based on the wall clock. Returns devices restored."""
        if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION or not isinstance(doc.get("devices"), dict):
            return 0
        now_mono, now_wall, n = clock.monotonic(), clock.wall(), 0
        for dev_id, saved in doc["devices"].items():
            live = self.live.get(dev_id)  # a device removed from the config is forgotten
            if live is None or not isinstance(saved, dict) or live.last_seen_wall is not None:
                continue
            try:
                wall = float(saved["last_seen_wall"])
                live.values = {str(k): v for k, v in dict(saved.get("values") or {}).items() if isinstance(v, (int, float, str, bool))}
                live.last_event = str(saved.get("last_event", ""))
                live.frames = int(saved.get("frames", 0))
                live.recent.extend((float(w), str(s)) for w, s in saved.get("recent") or [])
                live.signal_history.extend((float(w), dict(s)) for w, s in saved.get("signal_history") or [])
            except (KeyError, TypeError, ValueError):
                continue  # a damaged entry costs that device's history, nothing else
            age = max(0.0, now_wall - wall)
            live.last_seen_wall, live.last_seen_mono = wall, now_mono - age
            hb = self.devices[dev_id].heartbeat_s
            # Within its heartbeat the device counts as online, as it would had we not restarted.
            live.state = "online" if hb and age <= hb else ("offline" if saved.get("state") == "offline" else "unknown")
            live.restored = True
            n += 1
        return n


class SnapshotKeeper:
    """Saves LiveState to `path` when dirty, every `period_s` and at stop; loads it at start."""

    def __init__(self, state: LiveState, path: str | Path, clock: WallClock, log: Any, period_s: float = SNAPSHOT_PERIOD_S) -> None:
        self.state = state
        self.path = Path(path)
        self.clock = clock
        self.log = log.bind(stage="livestate")
        self.period_s = period_s
        self.counters = {"saves": 0, "save_failures": 0}
        self._warned = False

    def load(self) -> int:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            self.log.warning("livestate_unreadable", path=str(self.path), error=str(exc)[:200])
            return 0
        n = self.state.restore(doc, self.clock)
        if n:
            self.log.info("livestate_restored", devices=n, path=str(self.path))
        return n

    def save(self) -> bool:
        if not self.state.dirty:
            return True
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.state.snapshot(), ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.path)  # atomic: a reader or a power cut sees the old or the new file
        except OSError as exc:
            self.counters["save_failures"] += 1
            if not self._warned:  # first failure WARNING, repeats only counted (read-only card)
                self._warned = True
                self.log.warning("livestate_save_failed", path=str(self.path), error=str(exc))
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        self.state.dirty = False
        self.counters["saves"] += 1
        self._warned = False
        return True

    async def run(self) -> None:
        """Until cancelled; the final save happens on the way out (daemon stop)."""
        try:
            while True:
                await asyncio.sleep(self.period_s)
                self.save()
        finally:
            self.save()
