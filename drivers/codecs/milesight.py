"""Milesight's channel-coded uplink format (WS301, WS303, EM300-SLD, GS101 ...), shared by those codecs:
a run of `channel_id | channel_type | value`, each value's length fixed by the (id, type) pair, little endian.
Source: Milesight-IoT/SensorDecoders README tables and decoders. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.errors import CodecError

Channel = tuple[str, int, Callable[[bytes], int | float | str]]

# Attribute channels every model sends after power-on or a reset (Milesight "device info" frame).
ATTRIBUTES: dict[tuple[int, int], Channel] = {
    (0xFF, 0x01): ("ipso_version", 1, lambda b: f"v{b[0] >> 4}.{b[0] & 0x0F}"),
    (0xFF, 0x09): ("hardware_version", 2, lambda b: f"v{b[0]}.{b[1] >> 4}"),
    (0xFF, 0x0A): ("firmware_version", 2, lambda b: f"v{b[0]}.{b[1]}"),
    (0xFF, 0xFF): ("tsl_version", 2, lambda b: f"v{b[0]}.{b[1]}"),
    (0xFF, 0x16): ("sn", 8, lambda b: b.hex()),
    (0xFF, 0x08): ("sn", 6, lambda b: b.hex()),
    (0xFF, 0x0F): ("lorawan_class", 1, lambda b: "ABC"[b[0]] if b[0] < 3 else str(b[0])),
    (0xFF, 0x0B): ("device_status", 1, lambda b: b[0]),  # sent once at power-on
    (0xFF, 0xFE): ("reset_event", 1, lambda b: b[0]),
}


def u8(b: bytes) -> int:
    return b[0]


def u32(b: bytes) -> int:
    return int.from_bytes(b, "little")


def temperature(b: bytes) -> float:
    return int.from_bytes(b, "little", signed=True) / 10  # 0.1 °C, int16 LE


def humidity(b: bytes) -> float:
    return b[0] / 2  # 0.5 %RH steps


def walk(codec: str, payload: bytes, channels: dict[tuple[int, int], Channel]) -> dict[str, int | float | str]:
    """Every known channel's value by name. An unknown (id, type) ends the walk as in the vendor's decoder
    (its length is unknown); a truncated value, or a payload with no known channel, is a CodecError."""
    table = {**ATTRIBUTES, **channels}
    out: dict[str, int | float | str] = {}
    i = 0
    while i + 2 <= len(payload):
        entry = table.get((payload[i], payload[i + 1]))
        if entry is None:
            break
        name, size, convert = entry
        value = payload[i + 2:i + 2 + size]
        if len(value) != size:
            raise CodecError(codec, f"channel {payload[i]:02x} {payload[i + 1]:02x} truncated ({len(value)} of {size} bytes)")
        out[name] = convert(value)
        i += 2 + size
    if not out:
        raise CodecError(codec, f"no known channel in {payload[:4].hex()}...")
    return out


def pack(channels: dict[tuple[int, int], Channel], values: dict[str, bytes]) -> bytes:
    """The device side (simulator): name -> raw value bytes, in table order."""
    out = b""
    for (cid, ctype), (name, size, _) in channels.items():
        if name in values:
            assert len(values[name]) == size, name
            out += bytes([cid, ctype]) + values[name]
    return out
