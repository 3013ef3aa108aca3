"""What the daemon last saw of each device, for `gateway devices` and selftest (memory only;
the durable history is the outbox and the platform)."""

from __future__ import annotations

from typing import Any

from gateway.model import Device, Event, EventKind, Item, Reading

# Reading value keys that describe the radio link rather than the sensed world.
SIGNAL_KEYS = ("rssi_dbm", "snr_db", "csq", "rsrp_dbm")
BATTERY_KEYS = ("battery_pct", "battery_v")


class DeviceLive:
    __slots__ = ("last_seen_mono", "last_seen_wall", "values", "state", "last_event", "frames")

    def __init__(self) -> None:
        self.last_seen_mono: float | None = None
        self.last_seen_wall: float | None = None
        self.values: dict[str, Any] = {}
        self.state = "unknown"  # unknown | online | offline
        self.last_event = ""
        self.frames = 0


class LiveState:
    def __init__(self, devices: dict[str, Device]) -> None:
        self.devices = devices
        self.live = {d: DeviceLive() for d in devices}

    def observe(self, item: Item) -> None:
        live = self.live.get(item.device_id)
        if live is None:
            return
        if isinstance(item, Event) and item.kind == EventKind.OFFLINE:
            live.state = "offline"
            live.last_event = "offline"
            return
        live.last_seen_mono = item.stamp.mono_ns / 1e9
        live.last_seen_wall = item.stamp.wall_s
        live.frames += 1
        live.state = "online"
        if isinstance(item, Reading):
            live.values.update(item.values)
        else:
            live.last_event = f"{item.kind}{':' + item.code if item.code else ''}"
            for k, v in item.detail.items():
                if k in SIGNAL_KEYS or k in BATTERY_KEYS:
                    live.values[k] = v

    def rows(self, now_mono: float) -> list[dict[str, Any]]:
        out = []
        for dev_id, dev in self.devices.items():
            live = self.live[dev_id]
            out.append(
                {
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
                }
            )
        return out
