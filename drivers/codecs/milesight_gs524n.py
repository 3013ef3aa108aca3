"""Milesight GS524N LoRaWAN smoke detector, codec "milesight_gs524n": a fixed 6-byte report
(Milesight-IoT/SensorDecoders GS_Series/GS524N/README.md): version nibbles, sensor type | message type,
battery %, smoke concentration %, temperature °C (int8), and a check byte making the six bytes sum to 0.
"""

from __future__ import annotations

from drivers.codecs import CodecMeta
from drivers.codecs.fields import event, reading
from gateway.errors import CodecError
from gateway.model import EventKind, Item

NAME = "milesight_gs524n"
SENSOR_SMOKE = 1
k = EventKind
# Message type (low nibble of byte 2) -> event(s). "normal" is the periodic report with no alarm
# condition: it also clears an active smoke alarm (the detector sends no separate "alarm released").
MESSAGES: dict[int, tuple[str, list[tuple[EventKind, str]]]] = {
    1: ("alarm", [(k.ALARM, "smoke")]),
    2: ("silent", [(k.SILENCED, "local")]),
    4: ("low_battery", [(k.BATTERY_LOW, "battery")]),
    5: ("failover", [(k.FAULT, "sensor")]),
    7: ("normal", [(k.HEARTBEAT, ""), (k.ALARM_CLEARED, "smoke")]),
    10: ("removed", [(k.TAMPER, "removed_from_base")]),
    11: ("installed", [(k.TAMPER, "base_restored")]),
    14: ("test_normal_battery", [(k.TEST, "self_test")]),
    15: ("test_low_battery", [(k.TEST, "self_test"), (k.BATTERY_LOW, "battery")]),
}


def encode(message: str, battery_pct: int = 100, smoke_pct: int = 0, temperature_c: int = 25, version: int = 0x22) -> bytes:
    """The detector's side (simulators): a report with a correct check byte."""
    mtype = next(n for n, (name, _) in MESSAGES.items() if name == message)
    body = bytes([version, SENSOR_SMOKE << 4 | mtype, battery_pct, smoke_pct, temperature_c & 0xFF])
    return body + bytes([-sum(body) & 0xFF])


def decode(payload: bytes, meta: CodecMeta) -> list[Item]:
    if len(payload) != 6:  # the vendor decoder refuses any other length too
        raise CodecError(NAME, f"payload is {len(payload)} bytes, need 6")
    if sum(payload) & 0xFF:
        raise CodecError(NAME, "check byte wrong (the six bytes must sum to 0 mod 256)")
    if payload[1] >> 4 != SENSOR_SMOKE:
        raise CodecError(NAME, f"sensor type {payload[1] >> 4} is not a smoke detector (1)")
    message = MESSAGES.get(payload[1] & 0x0F)
    if message is None:
        raise CodecError(NAME, f"unknown message type {payload[1] & 0x0F}")
    name, events = message
    temp = payload[4] - 256 if payload[4] > 127 else payload[4]
    out: list[Item] = [reading(meta, {"alarm": name == "alarm", "battery_pct": payload[2] if payload[2] <= 100 else None,
                                      "smoke_pct": payload[3], "temperature_c": temp, "message": name,
                                      "firmware_version": payload[0] >> 4})]
    return out + [event(meta, kind, code) for kind, code in events]
