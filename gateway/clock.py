"""The one place that makes timestamps: wall time, boot id, monotonic ns and whether the wall clock is trusted;
and the one retry-delay policy (Backoff), which drivers may import from here (README layering rule).

Business logic never calls time.time(); durations are monotonic. Tests inject ManualClock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import random
import time
import uuid
from pathlib import Path

from gateway.model import Stamp

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

# adjtimex(2): the kernel's NTP discipline state. STA_UNSYNC (0x0040) is set until a time daemon
# (systemd-timesyncd, chrony) has disciplined the clock; TIME_ERROR (5) is returned while unsynced.
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (glibc, 64-bit and 32-bit long alike: all fields are long/int).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


def kernel_clock_synced() -> bool:
    """True when the kernel reports its clock as NTP-disciplined (adjtimex, read-only query)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        tx.modes = 0  # read only; needs no capability
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return False
    return state != _TIME_ERROR and not (tx.status & _STA_UNSYNC)


def read_boot_id() -> str:
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        # Not Linux: a per-process id keeps the (boot_id, mono_ns) pair meaningful.
        return str(uuid.uuid4())


class Clock:
    """System clock. `sync_policy`: "kernel" (adjtimex), "assume_synced" (bench machines, tests)."""

    def __init__(self, sync_policy: str = "kernel") -> None:
        self.boot_id = read_boot_id()
        self._policy = sync_policy
        self._synced = sync_policy == "assume_synced"
        self._external_offset_s: float | None = None  # from a secondary source (modem NITZ, GB 26875 type 90)

    def wall(self) -> float:
        return time.time()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def monotonic(self) -> float:
        return self.monotonic_ns() / 1e9

    def synced(self) -> bool:
        if not self._synced and self._policy == "kernel":
            # Once synced, stay synced for this boot: a later hiccup of the daemon must not
            # flag fresh records as untrusted.
            self._synced = kernel_clock_synced()
        return self._synced

    def now(self) -> Stamp:
        return Stamp(self.wall(), self.boot_id, self.monotonic_ns(), self.synced())

    def offer_time(self, source: str, utc_s: float) -> None:
        """A secondary time source (modem AT+CCLK?, GB 26875 type 90) reports the time.

        We do not set the system clock (that is the time daemon's job, and needs CAP_SYS_TIME);
        the offset is kept for status and diagnostics.
        """
        self._external_offset_s = utc_s - self.wall()
        self.last_offer_source = source

    def rebase(self, stamp: Stamp) -> Stamp:
        """Wall time of an unsynced stamp from the same boot, recomputed from its monotonic stamp."""
        if stamp.clock_synced or stamp.boot_id != self.boot_id or not self.synced():
            return stamp
        wall = self.wall() - (self.monotonic_ns() - stamp.mono_ns) / 1e9
        return Stamp(wall, stamp.boot_id, stamp.mono_ns, True)


class ManualClock(Clock):
    """A clock the test moves by hand: wall and monotonic move together unless `step_wall` jumps one."""

    def __init__(self, wall_s: float = 1_790_000_000.0, synced: bool = True, boot_id: str = "test-boot") -> None:
        self.boot_id = boot_id
        self._policy = "manual"
        self._synced = synced
        self._wall = wall_s
        self._mono_ns = 1_000_000_000
        self._external_offset_s = None

    def wall(self) -> float:
        return self._wall

    def monotonic_ns(self) -> int:
        return self._mono_ns

    def synced(self) -> bool:
        return self._synced

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._mono_ns += int(seconds * 1e9)

    def step_wall(self, seconds: float, synced: bool = True) -> None:
        """An NTP step: the wall clock jumps, monotonic does not."""
        self._wall += seconds
        self._synced = synced


class Backoff:
    """min(base * 2**tries, cap) with equal jitter (half fixed, half random): one policy for every
    retry loop (supervised tasks, the MQTT and GB/T 26875 uplinks, drivers reopening a port or modem).

    Jitter spreads a fleet of gateways reconnecting after a broker restart (reliability §7 R19);
    paho's own backoff doubles 1 -> 120 s without any (reliability §0.6).
    """

    def __init__(self, base_s: float = 1.0, cap_s: float = 60.0, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.tries = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        return min(self.cap_s, self.base_s * (1 << min(self.tries, 30)))

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failed attempt."""
        top = self.ceiling()
        self.tries += 1
        return top / 2 + self._rng.uniform(0, top / 2)

    def to_cap(self) -> None:
        """Auth errors: retrying sooner cannot help (aioesphomeapi reconnect_logic: straight to the cap)."""
        while self.base_s * (2 ** self.tries) < self.cap_s and self.tries < 30:
            self.tries += 1

    def reset(self) -> None:
        self.tries = 0

    def first_jitter(self) -> float:
        """Small random wait before the first attempt after the peer is seen back (fleet spread)."""
        return self._rng.uniform(0, min(0.5, self.base_s / 2))
