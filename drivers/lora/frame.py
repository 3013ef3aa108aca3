"""Our LoRa frame (byte layout in drivers/lora/README.md): encoder and a sans-IO deframer that finds
frames by sync byte, length and MIC/CRC in what the E22 module prints on its UART.

A receiving E22 outputs only the payload of each radio packet (plus one RSSI byte per packet when REG3
b7 is set) and never the sender's address (protocols.md §2.1), so identity and integrity live in here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from drivers.lora import crypto
from drivers.checksum import crc16  # CRC-16/MODBUS, the check protocols.md §2.1 names for keyless devices
from gateway.errors import FrameError

SYNC = 0xA5
VERSION = 1
FLAG_KEYLESS = 0x80  # ver byte b7: CRC-16 trailer (2 bytes) instead of the 4-byte MIC
FLAG_ENCRYPTED = 0x40  # ver byte b6: payload encrypted (crypto.payload_cipher)
HEADER_BYTES = 10  # A5 | ver | len | device id (4) | fcnt (2) | type
MIC_BYTES, CRC_BYTES = 4, 2
MAX_PAYLOAD = 255  # the len byte; longer than one 240-byte sub-packet arrives split
SUB_PACKET_BYTES = (240, 128, 64, 32)  # REG1 b7-6 (protocols.md §2.1)
MAX_FRAME = HEADER_BYTES + MAX_PAYLOAD + MIC_BYTES
BROADCAST_ID = 0xFFFFFFFF  # reserved, never a device id
# Downlink command byte (first payload byte of a COMMAND frame; the sensor echoes it in COMMAND_ACK).
COMMANDS = {"silence": 0x01, "acknowledge": 0x02, "self_test": 0x03}


class FrameType(enum.IntEnum):
    """The type byte; b7 set = downlink (gateway -> device), which is also the crypto direction."""

    REPORT = 0x01  # sensor report: the payload goes to the profile's codec
    COMMAND_ACK = 0x02  # the device confirms a downlink command; payload = command byte
    COMMAND = 0x81  # gateway -> device: silence, acknowledge (payload = command byte + args)

    @property
    def direction(self) -> int:
        return crypto.DOWNLINK if self.value & 0x80 else crypto.UPLINK


@dataclass(frozen=True)
class Frame:
    device_id: int
    fcnt: int
    type: FrameType
    payload: bytes  # decrypted
    rssi_dbm: int | None = None  # from the module's RSSI byte(s); the weakest sub-packet's
    encrypted: bool = False
    verified: bool = True  # False only in listen mode for a keyed device whose key we lack
    wire_bytes: int = 0
    # The MIC (or CRC): identifies the content, so an exact duplicate is recognised (not part of equality).
    trailer: bytes = field(default=b"", compare=False)


KEYLESS = None
"""Value in a `keys` mapping for a device that sends CRC-16 frames (no key provisioned)."""


def encode(device_id: int, fcnt: int, ftype: FrameType, payload: bytes, key: bytes | None, encrypt: bool = False) -> bytes:
    """One frame, ready to hand to the module. key None = keyless (CRC-16 trailer, no encryption)."""
    if not 1 <= device_id < BROADCAST_ID:
        raise ValueError(f"device id {device_id:#x} is outside 1..0xFFFFFFFE")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    if key is None and encrypt:
        raise ValueError("a keyless frame cannot be encrypted")
    flags = VERSION | (FLAG_KEYLESS if key is None else 0) | (FLAG_ENCRYPTED if encrypt else 0)
    body = payload if key is None or not encrypt else crypto.payload_cipher(key, device_id, fcnt, ftype.direction, payload)
    head = bytes([SYNC, flags, len(body)]) + device_id.to_bytes(4, "little") + (fcnt & 0xFFFF).to_bytes(2, "little") + bytes([ftype])
    if key is None:
        return head + body + crc16(head + body).to_bytes(2, "little")
    return head + body + crypto.mic(key, head + body)


def rssi_dbm(value: int, edition: str = "2024") -> int:
    """The module's RSSI byte in dBm. 2024 manual (and "auto"): dBm = -(256 - value). The 2018 editions
    print dBm = -RSSI/2 (the SX126x RssiPkt register, which the old firmware passes through)."""
    if edition == "2018":
        return -(value // 2)
    return -(256 - value)


def rssi_byte(dbm: int, edition: str = "2024") -> int:
    """The module's side (simulator): the RSSI byte it appends for a packet received at `dbm`."""
    if edition == "2018":
        return max(0, min(255, -2 * dbm))
    return max(0, min(255, 256 + dbm))


class Deframer:
    """Bytes in, Frames or FrameErrors out. Never raises out of feed(); bounded buffer.

    `keys` maps each known device id to its 16-byte key or KEYLESS. A candidate sync byte that does not
    lead to a valid frame is dropped alone (so a real frame right after garbage is still found); bytes
    before a sync byte are counted in `discarded_bytes`. `rssi`: the module appends one RSSI byte per
    radio packet, i.e. after every `sub_packet` bytes of a frame and at its end.
    """

    def __init__(self, keys: Mapping[int, bytes | None], rssi: bool = True, sub_packet: int = 240,
                 listen: bool = False, max_buffer: int = 4096, edition: str = "2024") -> None:
        if sub_packet not in SUB_PACKET_BYTES:
            raise ValueError(f"sub-packet size {sub_packet} is not one of {SUB_PACKET_BYTES}")
        self.keys = keys
        self.rssi, self.sub_packet, self.listen, self.edition = rssi, sub_packet, listen, edition
        self.max_buffer = max(max_buffer, 2 * self._wire_len(MAX_FRAME))
        self._buf = bytearray()
        self.rejects: dict[str, int] = {}
        self.frames = 0
        self.discarded_bytes = 0
        self.frame_bytes = 0

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete candidate frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        self._buf += data
        out: list[Frame | FrameError] = []
        if len(self._buf) > self.max_buffer:  # cannot happen with complete parsing; a guard, not a path
            drop = len(self._buf) - self.max_buffer
            out.append(self._reject("overflow", bytes(self._buf[:drop]), drop))
        self._scan(out)
        return out

    def expire(self) -> list[Frame | FrameError]:
        """The line has been quiet longer than any radio packet takes: the candidate at the head is
        truncated. Drop its sync byte and rescan what follows (a real frame may hide behind it)."""
        out: list[Frame | FrameError] = []
        while self._buf:
            out.append(self._reject("truncated", bytes(self._buf[:HEADER_BYTES]), 1))
            self._scan(out)
        return out

    def clear(self) -> None:
        self._buf.clear()

    # -- internals ------------------------------------------------------------------------------

    def _wire_len(self, frame_len: int) -> int:
        return frame_len + (-(-frame_len // self.sub_packet) if self.rssi else 0)

    def _reject(self, reason: str, data: bytes, drop: int) -> FrameError:
        del self._buf[:drop]
        self.discarded_bytes += drop
        self.rejects[reason] = self.rejects.get(reason, 0) + 1
        return FrameError(reason, data)

    def _scan(self, out: list[Frame | FrameError]) -> None:
        while self._buf:
            start = self._buf.find(SYNC)
            if start != 0:
                garbage = start if start > 0 else len(self._buf)
                out.append(self._reject("no_sync", bytes(self._buf[:garbage]), garbage))
                continue
            result = self._candidate()
            if result is None:
                return  # incomplete: wait for more bytes (or expire())
            out.append(result)

    def _candidate(self) -> Frame | FrameError | None:
        """Judge the frame starting at buf[0] (a sync byte): Frame, FrameError (1 byte dropped) or None."""
        buf = self._buf
        if len(buf) < 3:
            return None
        ver = buf[1]
        keyless, encrypted = bool(ver & FLAG_KEYLESS), bool(ver & FLAG_ENCRYPTED)
        if ver & 0x0F != VERSION or ver & 0x30 or (keyless and encrypted):
            return self._reject("bad_version", bytes(buf[:3]), 1)
        frame_len = HEADER_BYTES + buf[2] + (CRC_BYTES if keyless else MIC_BYTES)
        wire_len = self._wire_len(frame_len)
        if len(buf) >= 7:  # reject early on an unknown device or a keying downgrade: resync sooner
            problem = self._identity_problem(int.from_bytes(buf[3:7], "little"), keyless)
            if problem:
                return self._reject(problem, bytes(buf[:7]), 1)
        if len(buf) < wire_len:
            return None
        frame, rssi_values = self._unstuff(bytes(buf[:wire_len]), frame_len)
        try:
            ftype = FrameType(frame[9])
        except ValueError:
            return self._reject("bad_type", frame[:HEADER_BYTES], 1)
        dev = int.from_bytes(frame[3:7], "little")
        fcnt = int.from_bytes(frame[7:9], "little")
        key = self.keys.get(dev)
        verified = True
        if keyless:
            body, trailer = frame[:-CRC_BYTES], frame[-CRC_BYTES:]
            if crc16(body) != int.from_bytes(trailer, "little"):
                return self._reject("bad_crc", frame[:HEADER_BYTES], 1)
        else:
            body, trailer = frame[:-MIC_BYTES], frame[-MIC_BYTES:]
            if key is None:
                verified = False  # listen mode only (_identity_problem let it through)
            elif crypto.mic(key, body) != trailer:
                return self._reject("bad_mic", frame[:HEADER_BYTES], 1)
        payload = body[HEADER_BYTES:]
        if encrypted and key is not None:
            payload = crypto.payload_cipher(key, dev, fcnt, ftype.direction, payload)
        del self._buf[:wire_len]
        self.frames += 1
        self.frame_bytes += wire_len
        rssi = min(rssi_values) if rssi_values else None
        return Frame(dev, fcnt, ftype, payload, rssi, encrypted, verified, wire_len, bytes(trailer))

    def _identity_problem(self, dev: int, keyless: bool) -> str:
        if dev in (0, BROADCAST_ID):
            return "bad_device_id"
        if dev not in self.keys:
            return "" if self.listen else "unknown_device"
        # A keyed device never sends a CRC frame: accepting one would let anyone forge its alarms.
        if keyless != (self.keys[dev] is KEYLESS):
            return "keying_mismatch"
        return ""

    def _unstuff(self, wire: bytes, frame_len: int) -> tuple[bytes, list[int]]:
        """Split the module's output into frame bytes and the RSSI byte after each sub-packet."""
        if not self.rssi:
            return wire, []
        frame, rssi = bytearray(), []
        step = self.sub_packet + 1
        for at in range(0, len(wire), step):
            chunk = wire[at: at + step]
            frame += chunk[:-1]
            rssi.append(rssi_dbm(chunk[-1], self.edition))
        return bytes(frame[:frame_len]), rssi


def sub_packets(frame: bytes, sub_packet: int = 240) -> list[bytes]:
    """How a module transmits `frame`: radio packets of at most `sub_packet` bytes (simulator side)."""
    return [frame[i: i + sub_packet] for i in range(0, len(frame), sub_packet)]
