"""Milesight WS301 LoRaWAN door/window contact, codec "milesight_ws301" (channel format, see milesight.py;
Milesight-IoT/SensorDecoders WS_Series/WS301): battery, magnet state (0 closed, 1 open), install state
(0 installed, 1 removed). A fire door held open is an alarm condition for the rules (code door_open)."""

from __future__ import annotations

from drivers.codecs import CodecMeta
from drivers.codecs.fields import event, reading
from drivers.codecs.milesight import Channel, pack, u8, walk
from gateway.model import EventKind, Item

NAME = "milesight_ws301"
CHANNELS: dict[tuple[int, int], Channel] = {
    (0x01, 0x75): ("battery_pct", 1, u8),
    (0x03, 0x00): ("door", 1, u8),
    (0x04, 0x00): ("removed", 1, u8),
}


def encode(door_open: bool, removed: bool = False, battery_pct: int = 100) -> bytes:
    return pack(CHANNELS, {"battery_pct": bytes([battery_pct]), "door": bytes([int(door_open)]), "removed": bytes([int(removed)])})


def decode(payload: bytes, meta: CodecMeta) -> list[Item]:
    f = walk(NAME, payload, CHANNELS)
    values = {"battery_pct": f.get("battery_pct"), "door_open": f["door"] == 1 if "door" in f else None,
              "removed": f["removed"] == 1 if "removed" in f else None, "firmware_version": f.get("firmware_version")}
    out: list[Item] = [reading(meta, values)]
    if "door" in f:
        out.append(event(meta, EventKind.ALARM if f["door"] == 1 else EventKind.ALARM_CLEARED, "door_open"))
    if f.get("removed") == 1:
        out.append(event(meta, EventKind.TAMPER, "removed"))
    if len(out) == 1:
        out.append(event(meta, EventKind.HEARTBEAT, "power_on" if "device_status" in f else ""))
    return out
