"""Modbus framing, sans-IO: RTU (CRC-16) and TCP (MBAP) ADUs, request PDUs and reply checks.

Bytes in, frames or FrameErrors out; nothing raises out of `feed`. The driver (client role) and the
simulator (server role) share this code. Spec: Modbus Application Protocol v1.1b3 (MAP) and
Modbus over Serial Line v1.02 (MSL).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from drivers.checksum import crc16
from gateway.errors import FrameError, ModbusDeviceError

READ_BITS_MAX = 2000  # MAP §6.1/6.2: quantity of coils / discrete inputs 1..2000
READ_REGS_MAX = 125  # MAP §6.3/6.4: quantity of registers 1..125
WRITE_COILS_MAX = 1968  # MAP §6.11
WRITE_REGS_MAX = 123  # MAP §6.12
RTU_MAX_BYTES = 256  # MSL §2.5.1.1: an RTU ADU is at most 256 bytes
BIT_FUNCTIONS = (1, 2, 5, 15)


def rtu_adu(unit: int, pdu: bytes) -> bytes:
    body = bytes([unit]) + pdu
    return body + crc16(body).to_bytes(2, "little")


def mbap_adu(tid: int, unit: int, pdu: bytes) -> bytes:
    # MAP over TCP §3.1.3: transaction id, protocol id 0, length = unit id + PDU.
    return struct.pack(">HHHB", tid & 0xFFFF, 0, len(pdu) + 1, unit) + pdu


@dataclass(frozen=True)
class Request:
    """One Modbus request to one unit. `values` carries bits or registers for writes."""

    unit: int
    function: int
    address: int
    count: int = 1
    values: tuple[int, ...] = ()

    def pdu(self) -> bytes:
        fc, addr = self.function, self.address
        if fc in (1, 2, 3, 4):
            return struct.pack(">BHH", fc, addr, self.count)
        if fc == 5:  # MAP §6.5: ON = FF00, OFF = 0000
            return struct.pack(">BHH", fc, addr, 0xFF00 if self.values[0] else 0)
        if fc == 6:
            return struct.pack(">BHH", fc, addr, self.values[0] & 0xFFFF)
        if fc == 15:
            packed = pack_bits(self.values)
            return struct.pack(">BHHB", fc, addr, len(self.values), len(packed)) + packed
        if fc == 16:
            regs = b"".join(struct.pack(">H", v & 0xFFFF) for v in self.values)
            return struct.pack(">BHHB", fc, addr, len(self.values), len(regs)) + regs
        raise ValueError(f"function {fc} is not supported")

    def reply_bytes(self) -> int:
        """Length of the normal RTU reply (for wire-time and timeout budgets)."""
        if self.function in (1, 2):
            return 5 + (self.count + 7) // 8
        if self.function in (3, 4):
            return 5 + 2 * self.count
        return 8


def pack_bits(bits: tuple[int, ...] | list[int]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)  # MAP §6.1: LSB of the first byte is the lowest address
    return bytes(out)


def unpack_bits(data: bytes, count: int) -> list[bool]:
    return [bool(data[i // 8] >> (i % 8) & 1) for i in range(count)]


def parse_reply(req: Request, pdu: bytes) -> list[int] | list[bool]:
    """Check a reply PDU against its request; return registers or bits (empty for writes).

    Raises ModbusDeviceError for an exception response, FrameError when the reply does not match.
    """
    if not pdu:
        raise FrameError("empty reply")
    if pdu[0] == req.function | 0x80 and len(pdu) == 2:
        raise ModbusDeviceError(req.unit, pdu[1], req.function)
    if pdu[0] != req.function:
        raise FrameError(f"reply function {pdu[0]} to request function {req.function}", pdu)
    fc = req.function
    if fc in (1, 2, 3, 4):
        want = (req.count + 7) // 8 if fc in (1, 2) else 2 * req.count
        if len(pdu) < 2 or pdu[1] != want or len(pdu) != 2 + want:
            raise FrameError(f"byte count {pdu[1] if len(pdu) > 1 else '-'} of {len(pdu) - 2} bytes, expected {want}", pdu)
        if fc in (1, 2):
            return unpack_bits(pdu[2:], req.count)
        return list(struct.unpack(f">{req.count}H", pdu[2:]))
    if len(pdu) != 5 or pdu[1:5] != req.pdu()[1:5]:
        raise FrameError("write reply does not echo the request", pdu)
    return []


def _reply_length(buf: bytes | bytearray, i: int) -> int:
    """Full RTU length of a reply starting at buf[i]; 0 = need more bytes, -1 = cannot be a reply."""
    if len(buf) - i < 3:
        return 0
    fc = buf[i + 1]
    if fc & 0x80:
        return 5 if (fc & 0x7F) in (1, 2, 3, 4, 5, 6, 15, 16) else -1
    if fc in (1, 2, 3, 4):
        return 5 + buf[i + 2]
    if fc in (5, 6, 15, 16):
        return 8
    return -1


def _request_length(buf: bytes | bytearray, i: int) -> int:
    """Full RTU length of a request starting at buf[i] (server role)."""
    if len(buf) - i < 2:
        return 0
    fc = buf[i + 1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        return 0 if len(buf) - i < 7 else 9 + buf[i + 6]
    return -1


@dataclass
class RtuFrame:
    unit: int
    pdu: bytes


@dataclass
class RtuParser:
    """Finds CRC-valid RTU frames in a byte stream. A pty or USB adapter delivers arbitrary chunks,
    so frames are found by length + CRC (MSL's 1.5/3.5 character silences are not visible to us)."""

    server: bool = False
    buf: bytearray = field(default_factory=bytearray)

    def clear(self) -> bytes:
        old, self.buf = bytes(self.buf), bytearray()
        return old

    def feed(self, data: bytes) -> list[RtuFrame | FrameError]:
        self.buf += data
        out: list[RtuFrame | FrameError] = []
        length_of = _request_length if self.server else _reply_length
        start = skipped_from = 0
        bad_crc = False
        while len(self.buf) - start >= 4:
            n = length_of(self.buf, start)
            if n == 0:
                break
            plausible = 4 <= n <= RTU_MAX_BYTES
            if plausible and len(self.buf) - start < n:
                break  # wait for the rest of a plausible frame
            frame = bytes(self.buf[start : start + n]) if plausible else b""
            if frame and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little"):
                if start > skipped_from:
                    out.append(self._rejected(skipped_from, start, bad_crc))
                out.append(RtuFrame(frame[0], frame[1:-2]))
                start = skipped_from = start + n
                bad_crc = False
                continue
            bad_crc = bad_crc or bool(frame)
            start += 1  # hunt: the frame may begin at the next byte
        if start > skipped_from:
            out.append(self._rejected(skipped_from, start, bad_crc))
        del self.buf[:start]
        if len(self.buf) > RTU_MAX_BYTES:  # bounded: nothing longer can be a frame
            out.append(FrameError("garbage", bytes(self.buf)))
            self.buf.clear()
        return out

    def _rejected(self, a: int, b: int, bad_crc: bool) -> FrameError:
        return FrameError("bad_crc" if bad_crc else "garbage", bytes(self.buf[a:b]))


@dataclass
class MbapFrame:
    tid: int
    unit: int
    pdu: bytes


@dataclass
class MbapParser:
    """Modbus TCP frames; a broken header means the stream cannot be resynchronised (close it)."""

    buf: bytearray = field(default_factory=bytearray)
    broken: bool = False

    def feed(self, data: bytes) -> list[MbapFrame | FrameError]:
        self.buf += data
        out: list[MbapFrame | FrameError] = []
        while len(self.buf) >= 7 and not self.broken:
            tid, proto, length, unit = struct.unpack_from(">HHHB", self.buf)
            if proto != 0 or not 2 <= length <= 254:  # MAP over TCP §3.1.3: PDU <= 253 bytes
                out.append(FrameError(f"bad MBAP header (protocol {proto}, length {length})", bytes(self.buf)))
                self.broken = True
                self.buf.clear()
                break
            if len(self.buf) < 6 + length:
                break
            out.append(MbapFrame(tid, unit, bytes(self.buf[7 : 6 + length])))
            del self.buf[: 6 + length]
        return out
