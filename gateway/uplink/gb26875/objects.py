"""GB/T 26875.3-2011 application data units: the type flag, object count and the objects we use.

Layouts from protocols.md §5 (GB/T 26875.3 §8.3): each object ends with a 6-byte time tag in local time.
Types 90/91 are the centre's control requests; their layouts are our reading of the standard (verify).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from gateway.errors import FrameError
from gateway.uplink.gb26875.frame import pack_time_tag, time_tag

DESCRIPTION_LEN = 31  # bytes of GB18030, NUL-padded (type 2)


class TypeFlag(enum.IntEnum):
    """信息体类型标志 used here (§8.2.1.8)."""

    PART_STATE = 2
    PART_ANALOG = 3
    DEVICE_STATE = 21
    DEVICE_OPERATION = 24
    TIME_SYNC = 90
    OPERATOR_CHECK = 91


class PartBit(enum.IntFlag):
    """Part state word (16 bits LE). NORMAL set = normal operation, clear = test mode."""

    NORMAL = 1 << 0
    FIRE_ALARM = 1 << 1
    FAULT = 1 << 2
    DISABLED = 1 << 3
    SUPERVISORY = 1 << 4
    STARTED = 1 << 5
    FEEDBACK = 1 << 6
    DELAY = 1 << 7
    MAIN_POWER_FAULT = 1 << 8


class DeviceBit(enum.IntFlag):
    """Transmission-device state byte (type 21)."""

    NORMAL = 1 << 0
    FIRE_ALARM = 1 << 1
    FAULT = 1 << 2
    MAINS_FAULT = 1 << 3
    BACKUP_POWER_FAULT = 1 << 4
    COMMUNICATION_FAULT = 1 << 5
    MONITORING_FAULT = 1 << 6


class OperationBit(enum.IntFlag):
    """Transmission-device operation record (type 24); INSPECTION_REPLY answers a 查岗."""

    RESET = 1 << 0
    SILENCE = 1 << 1
    MANUAL_ALARM = 1 << 2
    CANCEL_ALARM = 1 << 3
    SELF_TEST = 1 << 4
    INSPECTION_REPLY = 1 << 5
    TEST = 1 << 6


@dataclass(frozen=True)
class PartState:
    sys_type: int
    sys_addr: int
    part_type: int
    part_addr: int
    state: int
    description: str
    time: dt.datetime


@dataclass(frozen=True)
class PartAnalog:
    sys_type: int
    sys_addr: int
    part_type: int
    part_addr: int
    param_type: int
    value: int  # raw int16 in the parameter's unit (e.g. 0.1 kPa)
    time: dt.datetime


@dataclass(frozen=True)
class DeviceState:
    state: int
    time: dt.datetime


@dataclass(frozen=True)
class DeviceOperation:
    flags: int
    operator: int
    time: dt.datetime


@dataclass(frozen=True)
class TimeSync:
    """The centre's time, to be set on the device (type 90)."""

    time: dt.datetime


@dataclass(frozen=True)
class OperatorCheck:
    """查岗 (type 91): a person must answer within `window_min` minutes (0: use our configured default)."""

    window_min: int


Object = Union[PartState, PartAnalog, DeviceState, DeviceOperation, TimeSync, OperatorCheck]


def _u8(v: int) -> bytes:
    if not 0 <= v <= 0xFF:
        raise FrameError("field_out_of_range")
    return bytes((v,))


def pack_description(text: str) -> bytes:
    """GB18030, cut at a character boundary to fit 31 bytes, NUL-padded."""
    raw = b""
    for ch in text.replace("\0", ""):
        enc = ch.encode("gb18030")
        if len(raw) + len(enc) > DESCRIPTION_LEN:
            break
        raw += enc
    return raw.ljust(DESCRIPTION_LEN, b"\0")


def unpack_description(raw: bytes) -> str:
    try:
        return raw.rstrip(b"\0").decode("gb18030")
    except UnicodeDecodeError:
        raise FrameError("bad_description", raw) from None


def _pack(obj: Object) -> bytes:
    if isinstance(obj, PartState):
        if not 0 <= obj.state <= 0xFFFF or not 0 <= obj.part_addr <= 0xFFFFFFFF:
            raise FrameError("field_out_of_range")
        return (_u8(obj.sys_type) + _u8(obj.sys_addr) + _u8(obj.part_type) + obj.part_addr.to_bytes(4, "little")
                + obj.state.to_bytes(2, "little") + pack_description(obj.description) + pack_time_tag(obj.time))
    if isinstance(obj, PartAnalog):
        if not -0x8000 <= obj.value <= 0x7FFF or not 0 <= obj.part_addr <= 0xFFFFFFFF:
            raise FrameError("field_out_of_range")
        return (_u8(obj.sys_type) + _u8(obj.sys_addr) + _u8(obj.part_type) + obj.part_addr.to_bytes(4, "little")
                + _u8(obj.param_type) + obj.value.to_bytes(2, "little", signed=True) + pack_time_tag(obj.time))
    if isinstance(obj, DeviceState):
        return _u8(obj.state) + pack_time_tag(obj.time)
    if isinstance(obj, DeviceOperation):
        return _u8(obj.flags) + _u8(obj.operator) + pack_time_tag(obj.time)
    if isinstance(obj, TimeSync):
        return pack_time_tag(obj.time)
    return _u8(obj.window_min)


def _part_state(b: bytes) -> PartState:
    return PartState(b[0], b[1], b[2], int.from_bytes(b[3:7], "little"), int.from_bytes(b[7:9], "little"),
                     unpack_description(b[9:40]), time_tag(b[40:46]))


def _part_analog(b: bytes) -> PartAnalog:
    return PartAnalog(b[0], b[1], b[2], int.from_bytes(b[3:7], "little"), b[7],
                      int.from_bytes(b[8:10], "little", signed=True), time_tag(b[10:16]))


# type flag -> (object class, object size in bytes, parser)
# type flag -> (object class, size on the wire, parser)
_LAYOUT: dict[TypeFlag, tuple[type[Object], int, Callable[[bytes], Object]]] = {
    TypeFlag.PART_STATE: (PartState, 46, _part_state),
    TypeFlag.PART_ANALOG: (PartAnalog, 16, _part_analog),
    TypeFlag.DEVICE_STATE: (DeviceState, 7, lambda b: DeviceState(b[0], time_tag(b[1:7]))),
    TypeFlag.DEVICE_OPERATION: (DeviceOperation, 8, lambda b: DeviceOperation(b[0], b[1], time_tag(b[2:8]))),
    TypeFlag.TIME_SYNC: (TimeSync, 6, lambda b: TimeSync(time_tag(b))),
    TypeFlag.OPERATOR_CHECK: (OperatorCheck, 1, lambda b: OperatorCheck(b[0])),
}
_FLAG_OF = {cls: flag for flag, (cls, _size, _parse) in _LAYOUT.items()}


def encode_adu(objects: list[Object]) -> bytes:
    """One ADU: all objects must share a type (the type flag covers the whole unit); 1..255 of them."""
    if not 1 <= len(objects) <= 255:
        raise FrameError("object_count_out_of_range")
    flag = _FLAG_OF[type(objects[0])]
    if any(type(o) is not type(objects[0]) for o in objects):
        raise FrameError("mixed_object_types")
    return bytes((flag, len(objects))) + b"".join(_pack(o) for o in objects)


def decode_adu(data: bytes) -> tuple[TypeFlag, list[Object]]:
    """Application data -> (type flag, objects). Unknown types and size mismatches are FrameErrors."""
    if len(data) < 2:
        raise FrameError("adu_too_short", data)
    try:
        flag = TypeFlag(data[0])
    except ValueError:
        raise FrameError("unknown_type", data) from None
    _cls, size, parse = _LAYOUT[flag]
    count = data[1]
    if count == 0 or count * size != len(data) - 2:
        raise FrameError("count_mismatch", data)
    return flag, [parse(data[2 + i * size : 2 + (i + 1) * size]) for i in range(count)]
