"""GB/T 26875.3-2011 frames, sans-IO: encode, decode one frame, and a streaming deframer.

Layout (protocols.md §5; GB/T 26875.3-2011 §8.2): "@@", serial (LE16), version (major, minor), time tag
(6 B, local time), source and destination addresses (LE48), application data length N (LE16), command (1),
N bytes of application data, checksum = sum of bytes 2 .. 26+N mod 256, "##".
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from gateway.errors import FrameError

START = b"@@"
END = b"##"
HEADER_LEN = 27  # "@@" .. command byte included
OVERHEAD_LEN = HEADER_LEN + 3  # + checksum + "##"
MAX_DATA_LEN = 4096  # our own bound: the largest ADU we send is ~2 + 255*46 B; longer is noise
MAX_SERIAL = 0xFFFF
MAX_ADDRESS = (1 << 48) - 1
VERSION = (1, 1)  # real frames carry 01 01 (protocols.md §5, verified frame)


class Command(enum.IntEnum):
    """Command byte (GB/T 26875.3 §8.2.1.7)."""

    CONTROL = 1
    SEND_DATA = 2
    CONFIRM = 3
    REQUEST = 4
    RESPONSE = 5
    DENY = 6


def time_tag(buf: bytes) -> dt.datetime:
    """6 bytes sec, min, hour, day, month, year-2000 -> naive local datetime; FrameError if impossible."""
    if len(buf) != 6:
        raise FrameError("bad_time_tag", buf)
    sec, minute, hour, day, month, year = buf
    try:
        return dt.datetime(2000 + year, month, day, hour, minute, sec)
    except ValueError:
        raise FrameError("bad_time_tag", buf) from None


def pack_time_tag(t: dt.datetime) -> bytes:
    if not 2000 <= t.year <= 2255:
        raise FrameError("time_out_of_range")
    return bytes((t.second, t.minute, t.hour, t.day, t.month, t.year - 2000))


TAG_MIN = dt.datetime(2000, 1, 1)
TAG_MAX = dt.datetime(2255, 12, 31, 23, 59, 59)


def local_time(wall_s: float, tz: dt.tzinfo) -> dt.datetime:
    """Wall clock (UTC seconds) -> the naive local time a time tag carries (the centre's zone).

    Clamped to what a tag can hold: a Pi without RTC may boot at 1970, and a fire alarm must still go out
    (with a visibly wrong time) rather than fail to encode.
    """
    try:
        t = dt.datetime.fromtimestamp(int(wall_s), tz).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return TAG_MIN if wall_s < 0 else TAG_MAX
    return min(max(t, TAG_MIN), TAG_MAX)


def utc_seconds(t: dt.datetime, tz: dt.tzinfo) -> float:
    """A time tag (naive local time in `tz`) -> UTC seconds."""
    return t.replace(tzinfo=tz).timestamp()


@dataclass(frozen=True)
class Frame:
    serial: int
    command: Command
    source: int
    destination: int
    time: dt.datetime
    data: bytes = b""
    version: tuple[int, int] = field(default=VERSION)


def checksum(body: bytes) -> int:
    """§8.2.1.9: arithmetic sum of serial .. application data, low 8 bits."""
    return sum(body) & 0xFF


def encode(frame: Frame) -> bytes:
    if not 0 <= frame.serial <= MAX_SERIAL:
        raise FrameError("serial_out_of_range")
    if not (0 <= frame.source <= MAX_ADDRESS and 0 <= frame.destination <= MAX_ADDRESS):
        raise FrameError("address_out_of_range")
    if len(frame.data) > MAX_DATA_LEN:
        raise FrameError("data_too_long")
    body = (
        frame.serial.to_bytes(2, "little")
        + bytes(frame.version)
        + pack_time_tag(frame.time)
        + frame.source.to_bytes(6, "little")
        + frame.destination.to_bytes(6, "little")
        + len(frame.data).to_bytes(2, "little")
        + bytes((int(frame.command),))
        + frame.data
    )
    return START + body + bytes((checksum(body),)) + END


def frame_length(buf: bytes | bytearray) -> int:
    """Total length announced by a header that starts at buf[0] (needs >= 26 bytes)."""
    n = int.from_bytes(buf[24:26], "little")
    if n > MAX_DATA_LEN:
        raise FrameError("length_too_large", bytes(buf[:26]))
    return OVERHEAD_LEN + n


def decode(buf: bytes) -> Frame:
    """Exactly one frame -> Frame; every defect a FrameError whose `reason` names it."""
    if buf[:2] != START:
        raise FrameError("no_start", buf)
    if len(buf) < OVERHEAD_LEN:
        raise FrameError("truncated", buf)
    total = frame_length(buf)
    if total > len(buf):
        raise FrameError("truncated", buf)  # the length field points past the bytes we have
    if buf[total - 2 : total] != END:
        raise FrameError("no_end", buf)
    if total != len(buf):
        raise FrameError("trailing_bytes", buf)
    if checksum(buf[2 : total - 3]) != buf[total - 3]:
        raise FrameError("bad_checksum", buf)
    try:
        command = Command(buf[26])
    except ValueError:
        raise FrameError("bad_command", buf) from None
    return Frame(
        serial=int.from_bytes(buf[2:4], "little"),
        command=command,
        source=int.from_bytes(buf[12:18], "little"),
        destination=int.from_bytes(buf[18:24], "little"),
        time=time_tag(buf[6:12]),
        data=bytes(buf[27 : total - 3]),
        version=(buf[4], buf[5]),
    )


class SerialCounter:
    """Business serial numbers: 16 bits, 65535 wraps to 0 (a confirm reuses the request's number)."""

    def __init__(self, start: int = 0) -> None:
        self._next = start & MAX_SERIAL

    def next(self) -> int:
        value = self._next
        self._next = (value + 1) & MAX_SERIAL
        return value


class Deframer:
    """Bytes in, frames and FrameErrors out. Resyncs on "@@" after noise; the buffer is bounded.

    Never raises: a bad frame comes back as a FrameError item (the caller logs and counts it) and the
    scan restarts after its "@@", so a corrupt frame cannot hide the good one behind it.
    """

    def __init__(self, max_buffer: int = 2 * (OVERHEAD_LEN + MAX_DATA_LEN)) -> None:
        self._buf = bytearray()
        self._max = max_buffer
        self.dropped_bytes = 0

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        self._buf += data
        out: list[Frame | FrameError] = []
        while True:
            start = self._buf.find(START)
            if start < 0:
                # Keep a trailing "@" in case the second one is in the next read.
                keep = 1 if self._buf.endswith(b"@") else 0
                self._drop(len(self._buf) - keep, out, "noise")
                break
            if start:
                self._drop(start, out, "noise")
            if len(self._buf) < 26:
                break
            try:
                # A plausible time tag before waiting for `length` bytes: a "@@" found inside noise or a
                # stray "@" before a real frame fails here at once instead of stalling the stream.
                time_tag(bytes(self._buf[6:12]))
                total = frame_length(self._buf)
            except FrameError as exc:
                out.append(exc)
                self._drop(1, None, "")
                continue
            if len(self._buf) < total:
                break
            try:
                out.append(decode(bytes(self._buf[:total])))
                del self._buf[:total]
            except FrameError as exc:
                out.append(exc)
                self._drop(1, None, "")  # resync just after this candidate's first "@"
        if len(self._buf) > self._max:
            self._drop(len(self._buf), out, "buffer_overflow")
        return out

    def _drop(self, n: int, out: list[Frame | FrameError] | None, reason: str) -> None:
        if n <= 0:
            return
        if out is not None:
            out.append(FrameError(reason, bytes(self._buf[:n])))
        del self._buf[:n]
        self.dropped_bytes += n
