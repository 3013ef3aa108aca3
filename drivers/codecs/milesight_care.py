"""Milesight payloads of the care devices (issue 22, residents living alone): the WS101 SOS button
("milesight_ws101") and the EM300-DI pulse counter on a water meter ("milesight_em300di"); the flat's door
contact is the WS301 (milesight_ws301.py). Layouts from Milesight-IoT/SensorDecoders (WS101, EM300-DI): a
sequence of [channel id, channel type, data]; an unknown channel is rejected (its length is unknown).
Also the simulator's encoders for the three care devices (drivers/lora/simsensors.py).
"""

from __future__ import annotations

from drivers.codecs import CodecMeta
from drivers.codecs.fields import event, reading
from gateway.errors import CodecError
from gateway.model import EventKind, Item

# Device information channels (0xFF, type) -> data length: skipped (ipso, hardware, firmware, power on,
# serial number, class, TSL, reset, device status); SensorDecoders README "Attribute" tables.
_INFO = {0x01: 1, 0x09: 2, 0x0A: 2, 0x0B: 1, 0x08: 6, 0x0F: 1, 0x16: 8, 0xFF: 2, 0xFE: 1}
# WS101 press types (channel ff 2e): 1 short, 2 long, 3 double. Short is the SOS call; long and double
# cancel it (issue 22: "double-press or long-press cancels if the vendor's payload supports it").
PRESS = {1: "short", 2: "long", 3: "double"}
# The devices report a battery percentage, no low-battery flag: at or below this they say battery_low, as
# the detectors do (the demo's battery-low rule and the platform then ask for a battery change).
BATTERY_LOW_PCT = 10


def channels(codec: str, payload: bytes) -> list[tuple[int, int, bytes]]:
    """[(id, type, data)] with the data length each known channel has; CodecError for anything else."""
    lengths = {(0x01, 0x75): 1, (0xFF, 0x2E): 1, (0x03, 0x00): 1, (0x04, 0x00): 1, (0x05, 0xC8): 4, (0x05, 0x00): 1}
    out, i = [], 0
    while i < len(payload):
        if i + 2 > len(payload):
            raise CodecError(codec, f"truncated channel header at byte {i}")
        cid, ctype = payload[i], payload[i + 1]
        n = _INFO.get(ctype) if cid == 0xFF and ctype != 0x2E else lengths.get((cid, ctype))
        if n is None:
            raise CodecError(codec, f"unknown channel {cid:02x} {ctype:02x}")
        data = payload[i + 2 : i + 2 + n]
        if len(data) != n:
            raise CodecError(codec, f"channel {cid:02x} {ctype:02x} needs {n} bytes, has {len(data)}")
        out.append((cid, ctype, data))
        i += 2 + n
    if not out:
        raise CodecError(codec, "empty payload")
    return out


def _battery(chs: list[tuple[int, int, bytes]]) -> int | None:
    pct = next((d[0] for c, t, d in chs if (c, t) == (0x01, 0x75)), None)
    return pct if pct is not None and pct <= 100 else None


def _low(meta: CodecMeta, pct: int | None) -> list[Item]:
    return [event(meta, EventKind.BATTERY_LOW, "battery", battery_pct=pct)] if pct is not None and pct <= BATTERY_LOW_PCT else []


def decode_ws101(payload: bytes, meta: CodecMeta) -> list[Item]:
    """SOS button: short press -> alarm/sos; long or double press -> alarm_cleared/sos; a battery-only
    report is the periodic heartbeat."""
    chs = channels("milesight_ws101", payload)
    out: list[Item] = [reading(meta, {"battery_pct": _battery(chs)}), *_low(meta, _battery(chs))]
    press = next((d[0] for c, t, d in chs if (c, t) == (0xFF, 0x2E)), None)
    if press is None:
        return out + [event(meta, EventKind.HEARTBEAT)]
    if press not in PRESS:
        raise CodecError("milesight_ws101", f"unknown press type {press}")
    kind = EventKind.ALARM if PRESS[press] == "short" else EventKind.ALARM_CLEARED
    return out + [event(meta, kind, "sos", press=PRESS[press])]


def decode_em300di(payload: bytes, meta: CodecMeta) -> list[Item]:
    """Pulse counter on a water meter's pulse output: `pulses` (running total); litres per pulse is the
    inactivity source's litres_per_unit."""
    chs = channels("milesight_em300di", payload)
    values: dict[str, object] = {"battery_pct": _battery(chs)}
    for c, t, d in chs:
        if (c, t) == (0x05, 0xC8):
            values["pulses"] = int.from_bytes(d, "little")
    return [reading(meta, values), *_low(meta, _battery(chs))]  # type: ignore[arg-type]


# ---- encoders for the simulator (drivers/lora/simsensors.py): the same channels, built the other way ----
SIM_REASONS: dict[str, tuple[str, ...]] = {
    "sos_button": ("heartbeat", "press", "cancel"),
    "door_contact": ("heartbeat", "door_opened", "door_closed"),
    "water_meter": ("heartbeat", "water_used"),
}
PULSES_PER_USE = 20  # "water_used": a wash, 20 pulses (20 L at 1 L/pulse)


def sim_payload(kind: str, reason: str, state: dict[str, int], battery_pct: int = 95) -> bytes:
    """The payload a sensor of `kind` sends for `reason`; `state` keeps door and pulse count between reports."""
    battery = bytes([0x01, 0x75, battery_pct])
    if kind == "sos_button":
        press = {"press": 1, "cancel": 3}.get(reason)
        return battery + (bytes([0xFF, 0x2E, press]) if press else b"")
    if kind == "door_contact":
        if reason != "heartbeat":
            state["door"] = 1 if reason == "door_opened" else 0
        return battery + bytes([0x03, 0x00, state.get("door", 0)])
    if kind == "water_meter":
        if reason == "water_used":
            state["pulses"] = state.get("pulses", 0) + PULSES_PER_USE
        return battery + bytes([0x05, 0xC8]) + state.get("pulses", 0).to_bytes(4, "little")
    raise ValueError(f"no Milesight simulation for {kind!r}")
