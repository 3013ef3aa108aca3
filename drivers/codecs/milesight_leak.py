"""Milesight water-leak sensors (channel format, see milesight.py): codec "milesight_ws303" (WS303 mini leak
sensor) and "milesight_em300_sld" (EM300-SLD/ZLD spot/zone leak sensor with temperature and humidity).
Tables from Milesight-IoT/SensorDecoders WS_Series/WS303 and EM_Series/EM300_Series/EM300-SLD."""

from __future__ import annotations

from drivers.codecs import CodecMeta
from drivers.codecs.fields import event, reading
from drivers.codecs.milesight import Channel, humidity, pack, temperature, u8, walk
from gateway.errors import CodecError
from gateway.model import EventKind, Item, Value

WS303: dict[tuple[int, int], Channel] = {
    (0x01, 0x75): ("battery_pct", 1, u8),
    (0x03, 0x00): ("leak", 1, u8),  # 0 normal, 1 leak
}
EM300_SLD: dict[tuple[int, int], Channel] = {
    (0x01, 0x75): ("battery_pct", 1, u8),
    (0x03, 0x67): ("temperature_c", 2, temperature),
    (0x04, 0x68): ("humidity_pct", 1, humidity),
    (0x05, 0x00): ("leak", 1, u8),
    # 0x20 0xCE historical records (timestamp 4, temperature 2, humidity 1, leak 1) are replayed data
    # from the device's memory after an outage: walked over, not raised as new alarms.
    (0x20, 0xCE): ("history", 8, lambda b: b.hex()),
}


def _decode(name: str, table: dict[tuple[int, int], Channel], payload: bytes, meta: CodecMeta) -> list[Item]:
    f = walk(name, payload, table)
    if set(f) == {"history"}:
        raise CodecError(name, "a historical record only (retransmitted from memory), nothing current")
    values: dict[str, Value | None] = {k: v for k, v in f.items() if k in ("battery_pct", "temperature_c", "humidity_pct", "firmware_version")}
    if "leak" in f:
        values["leak"] = f["leak"] == 1
    out: list[Item] = [reading(meta, values)]
    if f.get("leak") == 1:
        out.append(event(meta, EventKind.ALARM, "leak"))
    elif f.get("leak") == 0:
        out.append(event(meta, EventKind.ALARM_CLEARED, "leak"))
    out.append(event(meta, EventKind.HEARTBEAT, "power_on" if "device_status" in f else ""))
    return out


def decode_ws303(payload: bytes, meta: CodecMeta) -> list[Item]:
    return _decode("milesight_ws303", WS303, payload, meta)


def decode_em300_sld(payload: bytes, meta: CodecMeta) -> list[Item]:
    return _decode("milesight_em300_sld", EM300_SLD, payload, meta)


def encode_ws303(leak: bool, battery_pct: int = 100) -> bytes:
    return pack(WS303, {"battery_pct": bytes([battery_pct]), "leak": bytes([int(leak)])})
