"""Helpers the sensor codecs share: exact-length unpacking, flag bytes, scaled values with
"not measured" sentinels, and building Readings/Events from a CodecMeta. Pure, no I/O."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, overload

from drivers.codecs import CodecMeta
from gateway.errors import CodecError
from gateway.model import Event, EventKind, Reading, Value


def unpack(codec: str, fmt: str, payload: bytes) -> tuple[Any, ...]:
    """struct.unpack with the sensor's length rule: the payload is at least the known layout; extra
    trailing bytes are allowed (a later firmware may append fields), fewer are an error."""
    size = struct.calcsize(fmt)
    if len(payload) < size:
        raise CodecError(codec, f"payload is {len(payload)} bytes, need at least {size}")
    return struct.unpack_from(fmt, payload)


def bits(value: int, names: Sequence[str]) -> dict[str, bool]:
    """Flag byte -> {name: bool}, bit 0 first; names beyond the byte's bits are not allowed."""
    return {name: bool(value >> i & 1) for i, name in enumerate(names)}


def pack_bits(names: Sequence[str], on: dict[str, bool]) -> int:
    return sum(1 << i for i, name in enumerate(names) if on.get(name))


def set_names(value: int, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(name for i, name in enumerate(names) if value >> i & 1)


def reason(codec: str, table: Sequence[str], value: int) -> str:
    """Report reason byte -> its name; an unknown reason is an error (the sensor speaks a newer dialect)."""
    if value >= len(table):
        raise CodecError(codec, f"unknown report reason {value}")
    return table[value]


# missing=None: the field has no "not measured" value, so the result is always a number.
@overload
def scaled(raw: int, scale: float, missing: None, digits: int = 2) -> float: ...
@overload
def scaled(raw: int, scale: float, missing: int | None, digits: int = 2) -> float | None: ...


def scaled(raw: int, scale: float, missing: int | None, digits: int = 2) -> float | None:
    """Raw field -> engineering value, or None when the sensor sends its "not measured" value."""
    return None if raw == missing else round(raw * scale, digits)


def raw(value: float | None, scale: float, missing: int) -> int:
    return missing if value is None else round(value / scale)


def reading(meta: CodecMeta, values: dict[str, Value | None]) -> Reading:
    """One Reading: None values (not measured) are left out; the radio's RSSI/SNR ride along."""
    out: dict[str, Value] = {k: v for k, v in values.items() if v is not None}
    if meta.rssi_dbm is not None:
        out["rssi_dbm"] = meta.rssi_dbm
    if meta.snr_db is not None:
        out["snr_db"] = meta.snr_db
    return Reading(meta.device_id, meta.stamp, out, via=meta.via)


def event(meta: CodecMeta, kind: EventKind, code: str = "", **detail: Value) -> Event:
    return Event(meta.device_id, kind, meta.stamp, code=code, detail=detail, via=meta.via)


def still_alarming(meta: CodecMeta, status: dict[str, bool], flag_codes: dict[str, str], emitted: Sequence[object]) -> list[Event]:
    """ALARM events (detail repeated=True) for status flags still set in a later report, unless this
    report already carries that alarm: the original alarm frame may have been lost on the radio."""
    done = {e.code for e in emitted if isinstance(e, Event) and e.kind is EventKind.ALARM}
    return [event(meta, EventKind.ALARM, code, repeated=True)
            for flag, code in flag_codes.items() if status.get(flag) and code not in done]
