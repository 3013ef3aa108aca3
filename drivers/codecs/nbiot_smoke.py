"""Codec "nbiot_smoke_v1": the UDP datagram of an NB-IoT independent smoke alarm, and its ack.

Vendor UDP protocols of NB-IoT smoke alarms (protocols.md §1.1, §4) share one shape: a start byte, the
IMEI (the SIM's IP is dynamic, so the payload names the sender), a message type, a sequence number the
sensor repeats on retries, the device state and a checksum. This is ours, byte by byte (big-endian):

    off len field
    0   1   start 0xA5
    1   1   version 0x01
    2   8   IMEI, packed BCD, 15 digits then 0xF: "861234567890123" -> 86 12 34 56 78 90 12 3F
    10  1   message type (TYPES below)
    11  2   sequence number, uint16; a new message increments it, a retry repeats it (de-dup key)
    13  1   state flags: bit0 smoke alarm, bit1 silenced, bit2 fault, bit3 battery low,
            bit4 removed from base, bit5 self-test running (bits 6-7 reserved, 0)
    14  1   fault code: 0 none, 1 smoke chamber, 2 chamber fouled, 3 buzzer, 4 sensor
    15  2   battery voltage, mV (3.6 V lithium cell: ~3600 new, ~2600 low)
    17  1   smoke density, 0.01 dB/m (GB 20517 response threshold is 0.1-0.2 dB/m)
    18  1   temperature, int8, deg C
    19  1   checksum: sum of bytes 0..18 mod 256
    = 20 bytes

Ack, gateway -> sensor, sent within ~2 s of receipt (protocols.md §1.1 "sensor-side timing"):

    0 0xA5 | 1 0x01 | 2 0x80 (ack) | 3 message type acked | 4-5 sequence acked | 6 status 0x00 ok | 7 sum of 0..6

Events and Reading field names are those of the LoRa smoke codec (drivers/codecs/smoke.py): alarm/"smoke",
silenced/"local", test/"self_test", tamper/"removed_from_base", battery_low/"battery", fault/<fault name>;
fields alarm, silenced, removed_from_base, battery_low, testing, fault_<name>, battery_mv, smoke_db_m,
temperature_c. Every message yields a Reading and one Event.
"""

from __future__ import annotations

from typing import NamedTuple

from drivers.codecs import CodecMeta
from gateway.errors import CodecError
from gateway.model import Event, EventKind, Item, Reading, Value

NAME = "nbiot_smoke_v1"
START, VERSION, ACK_TYPE = 0xA5, 0x01, 0x80
LENGTH, ACK_LENGTH = 20, 8

HEARTBEAT, ALARM, ALARM_CLEARED, SILENCED, SELF_TEST, FAULT, FAULT_CLEARED, REMOVED, BATTERY_LOW = range(1, 10)
# message type -> (event kind, code); the code of FAULT / FAULT_CLEARED comes from the fault code byte.
TYPES: dict[int, tuple[EventKind, str]] = {
    HEARTBEAT: (EventKind.HEARTBEAT, ""),
    ALARM: (EventKind.ALARM, "smoke"),
    ALARM_CLEARED: (EventKind.ALARM_CLEARED, "smoke"),
    SILENCED: (EventKind.SILENCED, "local"),
    SELF_TEST: (EventKind.TEST, "self_test"),
    FAULT: (EventKind.FAULT, ""),
    FAULT_CLEARED: (EventKind.FAULT_CLEARED, ""),
    REMOVED: (EventKind.TAMPER, "removed_from_base"),
    BATTERY_LOW: (EventKind.BATTERY_LOW, "battery"),
}
FAULT_CODES = {0: "none", 1: "smoke_chamber", 2: "chamber_fouled", 3: "buzzer", 4: "sensor"}
# Reading field names follow drivers/codecs/smoke.py (the shared contract): its STATUS names, fault_<name>.
FLAGS = ("alarm", "silenced", "fault", "battery_low", "removed_from_base", "testing")


class Header(NamedTuple):
    imei: str
    msg_type: int
    seq: int


def _sum(data: bytes) -> int:
    return sum(data) & 0xFF


def imei_bcd(imei: str) -> bytes:
    if len(imei) != 15 or not imei.isdigit():
        raise CodecError(NAME, f"IMEI {imei!r} is not 15 digits")
    return bytes.fromhex(imei + "F")


def header(payload: bytes) -> Header:
    """Check framing and checksum; return who sent it and which message it is. Raises CodecError."""
    if len(payload) != LENGTH:
        raise CodecError(NAME, f"{len(payload)} bytes, expected {LENGTH}")
    if payload[0] != START or payload[1] != VERSION:
        raise CodecError(NAME, f"start/version {payload[:2].hex()} is not a5 01")
    if _sum(payload[:19]) != payload[19]:
        raise CodecError(NAME, f"checksum {payload[19]:02x} != {_sum(payload[:19]):02x}")
    digits = payload[2:10].hex().upper()
    if not digits[:15].isdigit() or digits[15] != "F":
        raise CodecError(NAME, f"IMEI field {payload[2:10].hex()} is not 15 BCD digits + F")
    if payload[10] not in TYPES:
        raise CodecError(NAME, f"unknown message type 0x{payload[10]:02x}")
    return Header(digits[:15], payload[10], int.from_bytes(payload[11:13], "big"))


def decode(payload: bytes, meta: CodecMeta) -> list[Item]:
    h = header(payload)
    flags, fault_code = payload[13], payload[14]
    if flags & 0xC0:
        raise CodecError(NAME, f"reserved flag bits set in 0x{flags:02x}")
    if fault_code not in FAULT_CODES:
        raise CodecError(NAME, f"unknown fault code {fault_code}")
    values: dict[str, float | int | bool | str] = {name: bool(flags >> bit & 1) for bit, name in enumerate(FLAGS) if name != "fault"}
    values.update({f"fault_{name}": fault_code == code for code, name in FAULT_CODES.items() if code})
    values.update(
        battery_mv=int.from_bytes(payload[15:17], "big"),
        smoke_db_m=payload[17] / 100,
        temperature_c=int.from_bytes(payload[18:19], "big", signed=True),
        seq=h.seq,
    )
    if meta.rssi_dbm is not None:
        values["rssi_dbm"] = meta.rssi_dbm
    kind, code = TYPES[h.msg_type]
    if kind in (EventKind.FAULT, EventKind.FAULT_CLEARED):
        if fault_code == 0:
            raise CodecError(NAME, f"{kind} message without a fault code")
        code = FAULT_CODES[fault_code]
    detail: dict[str, Value] = {"seq": h.seq, "imei": h.imei}
    return [
        Reading(meta.device_id, meta.stamp, values, via=meta.via),
        Event(meta.device_id, kind, meta.stamp, code=code, detail=detail, via=meta.via),
    ]


def ack(payload: bytes) -> bytes:
    """The acknowledgement the sensor waits for (it retries 1-3 times without one)."""
    h = header(payload)
    body = bytes([START, VERSION, ACK_TYPE, h.msg_type]) + h.seq.to_bytes(2, "big") + b"\x00"
    return body + bytes([_sum(body)])


def parse_ack(data: bytes) -> tuple[int, int]:
    """Sensor side (simulator): -> (message type acked, sequence acked)."""
    if len(data) != ACK_LENGTH or data[:3] != bytes([START, VERSION, ACK_TYPE]) or _sum(data[:7]) != data[7]:
        raise CodecError(NAME, f"not an ack: {data.hex()}")
    return data[3], int.from_bytes(data[4:6], "big")


def encode(imei: str, msg_type: int, seq: int, *, flags: int = 0, fault_code: int = 0, battery_mv: int = 3600,
           smoke_db_m: float = 0.0, temperature_c: int = 20) -> bytes:
    """Build a datagram as the sensor does (simulator, tests)."""
    body = (bytes([START, VERSION]) + imei_bcd(imei) + bytes([msg_type]) + (seq & 0xFFFF).to_bytes(2, "big")
            + bytes([flags & 0x3F, fault_code]) + battery_mv.to_bytes(2, "big")
            + bytes([min(255, round(smoke_db_m * 100))]) + temperature_c.to_bytes(1, "big", signed=True))
    return body + bytes([_sum(body)])
