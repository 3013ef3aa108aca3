"""Register maps, sans-IO: decode/encode every data type and byte/word order, and merge a slave's
fields into as few requests as the limits allow (<= 125 registers, <= 2000 bits per read)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from drivers.modbus.config import WIDTH, ModbusProfile, RegisterSpec
from drivers.modbus.framing import READ_BITS_MAX, READ_REGS_MAX
from gateway.errors import CodecError
from gateway.model import Value

_FMT = {"int16": ">h", "uint16": ">H", "bits": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}


def _to_bytes(regs: list[int], byte_order: str, word_order: str) -> bytes:
    # word_order "big": the first register holds the most significant word (Modbus default);
    # byte_order "little": each register's two bytes are swapped (e.g. a pH meter sending
    # IEEE-754 little-endian "00 00 C8 41" = 25.0 uses little/little, protocols.md §3.1).
    words = regs if word_order == "big" else list(reversed(regs))
    return b"".join(w.to_bytes(2, "big" if byte_order == "big" else "little") for w in words)


def _from_bytes(raw: bytes, byte_order: str, word_order: str) -> list[int]:
    words = [int.from_bytes(raw[i : i + 2], "big" if byte_order == "big" else "little") for i in range(0, len(raw), 2)]
    return words if word_order == "big" else list(reversed(words))


def decode(spec: RegisterSpec, regs: list[int], profile: ModbusProfile) -> float | int | bool:
    """Engineering value of one field from its registers (or its bit). Raises CodecError for
    values the device uses for "no measurement" and for NaN/Inf floats."""
    if spec.type == "bool":
        return bool(regs[0])
    raw_bytes = _to_bytes(regs, spec.byte_order or profile.byte_order, spec.word_order or profile.word_order)
    raw: float | int = struct.unpack(_FMT[spec.type], raw_bytes)[0]
    if spec.type == "bits":
        return raw
    if spec.invalid and int.from_bytes(raw_bytes, "big") in spec.invalid:
        raise CodecError("modbus", f"{spec.name}: sensor reports no value (raw 0x{raw_bytes.hex()})")
    if spec.type == "float32" and not math.isfinite(raw):
        raise CodecError("modbus", f"{spec.name}: {raw} is not a finite number")
    if spec.scale == 1.0 and spec.offset == 0.0:
        return raw
    # 12 significant digits remove binary noise (5000 * 0.1 = 500.00000000000006) and keep
    # every digit a 32-bit register can carry.
    return float(f"{raw * spec.scale + spec.offset:.12g}")


def encode(spec_type: str, value: float | int | bool, scale: float = 1.0, offset: float = 0.0,
           byte_order: str = "big", word_order: str = "big") -> list[int]:
    """Registers for an engineering value (outputs, simulator). Raises ValueError when out of range."""
    if spec_type == "bool":
        return [1 if value else 0]
    raw = (float(value) - offset) / scale
    if spec_type != "float32":
        raw = int(round(raw))
    try:
        packed = struct.pack(_FMT[spec_type], raw)
    except struct.error as exc:
        raise ValueError(f"{value!r} does not fit {spec_type} (scale {scale}): {exc}") from None
    return _from_bytes(packed, byte_order, word_order)


@dataclass(frozen=True)
class Block:
    """One read request covering several fields: `fields` are (spec, offset into the block)."""

    function: int
    address: int
    count: int
    fields: tuple[tuple[RegisterSpec, int], ...]


def plan(profile: ModbusProfile) -> list[Block]:
    """Merge fields of one function code into requests: contiguous or separated by at most
    `max_gap` unused addresses, never beyond the per-request limit of that function."""
    blocks: list[Block] = []
    for fc in (1, 2, 3, 4):
        specs = sorted((r for r in profile.registers if r.function == fc), key=lambda r: r.address)
        limit = READ_BITS_MAX if fc in (1, 2) else READ_REGS_MAX
        current: list[RegisterSpec] = []
        start = end = 0
        for spec in specs:
            s_end = spec.address + WIDTH[spec.type]
            if current and spec.address - end <= profile.max_gap and max(end, s_end) - start <= limit:
                current.append(spec)
                end = max(end, s_end)
                continue
            if current:
                blocks.append(_block(fc, start, end, current))
            current, start, end = [spec], spec.address, s_end
        if current:
            blocks.append(_block(fc, start, end, current))
    return blocks


def _block(fc: int, start: int, end: int, specs: list[RegisterSpec]) -> Block:
    return Block(fc, start, end - start, tuple((s, s.address - start) for s in specs))


def decode_block(block: Block, values: list[int] | list[bool], profile: ModbusProfile) -> tuple[dict[str, Value], list[str]]:
    """Field values of one block reply, and a problem string per field that could not be decoded."""
    out: dict[str, Value] = {}
    problems: list[str] = []
    for spec, off in block.fields:
        try:
            out[spec.name] = decode(spec, list(values[off : off + WIDTH[spec.type]]), profile)
        except CodecError as exc:
            problems.append(exc.reason)
    return out, problems
