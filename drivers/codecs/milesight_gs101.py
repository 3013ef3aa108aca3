"""Milesight GS101 LoRaWAN combustible-gas detector, codec "milesight_gs101" (channel format, see
milesight.py; table from Milesight-IoT/SensorDecoders GS_Series/GS101): gas status, valve and relay
output, sensor life remaining, and an alarm channel for power and sensor-health transitions."""

from __future__ import annotations

from drivers.codecs import CodecMeta
from drivers.codecs.fields import event, reading
from drivers.codecs.milesight import Channel, pack, u8, u32, walk
from gateway.model import EventKind, Item

NAME = "milesight_gs101"
CHANNELS: dict[tuple[int, int], Channel] = {
    (0x05, 0x8E): ("gas_status", 1, u8),  # 0 normal, 1 alarm
    (0x06, 0x01): ("valve", 1, u8),  # 0 off, 1 on
    (0x07, 0x01): ("relay", 1, u8),
    (0x08, 0x90): ("life_remain_s", 4, u32),
    (0xFF, 0x3F): ("alarm", 1, u8),
}
k = EventKind
# Alarm channel: 0 power off, 1 power on, 2 sensor fault, 3 fault recovered, 4 sensor will be invalid soon,
# 5 sensor invalid (end of life).
ALARM_EVENTS = {0: (k.FAULT, "mains_lost"), 1: (k.FAULT_CLEARED, "mains_lost"), 2: (k.FAULT, "sensor"),
                3: (k.FAULT_CLEARED, "sensor"), 4: (k.FAULT, "end_of_life_soon"), 5: (k.FAULT, "end_of_life")}


def encode(**values: int) -> bytes:
    """The detector's side: e.g. encode(gas_status=1, valve=1)."""
    sizes = {name: size for name, size, _ in CHANNELS.values()}
    return pack(CHANNELS, {n: v.to_bytes(sizes[n], "little") for n, v in values.items()})


def decode(payload: bytes, meta: CodecMeta) -> list[Item]:
    f = walk(NAME, payload, CHANNELS)
    values = {"gas_alarm": f["gas_status"] == 1 if "gas_status" in f else None,
              "valve_on": f["valve"] == 1 if "valve" in f else None, "relay_on": f["relay"] == 1 if "relay" in f else None,
              "life_months": round(int(f["life_remain_s"]) / (30 * 86400)) if "life_remain_s" in f else None,
              "firmware_version": f.get("firmware_version")}
    events = []
    # One alarm level: a household detector (GB 15322.2) alarms at its level-1 set point, hence gas_low;
    # the rules raise gas_low and gas_high alike. A report with gas_status normal clears it.
    if f.get("gas_status") == 1:
        events.append(event(meta, k.ALARM, "gas_low"))
    elif f.get("gas_status") == 0:
        events.append(event(meta, k.ALARM_CLEARED, ""))
    if f.get("alarm") in ALARM_EVENTS:
        events.append(event(meta, *ALARM_EVENTS[int(f["alarm"])]))
    if "device_status" in f:
        events.append(event(meta, k.HEARTBEAT, "power_on"))
    elif all(e.kind is k.ALARM_CLEARED for e in events):  # a periodic report: also proof of life
        events.append(event(meta, k.HEARTBEAT, ""))
    return [reading(meta, values), *events]
