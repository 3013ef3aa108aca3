"""Replay protection: per-device 16-bit frame counter with wrap, a forward window, and a counter
reset (battery change) accepted only after a quiet time (protocols.md §2.1 "Driver must")."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.errors import FrameError

FCNT_MOD = 0x10000
# A device that lost power restarts its counter at 0; a reset is recognised only for counters this
# small. Anything else out of window is a jump (lost state, or an attacker's replay of an old frame).
RESET_MAX_FCNT = 16


class Verdict(enum.Enum):
    FIRST = "first"  # no state yet (gateway restart): accepted, the counter is learnt
    ACCEPT = "accept"
    RESET = "counter_reset"  # accepted; the driver emits a counter_reset Event


@dataclass
class _Track:
    last: int
    seen_mono: float


class ReplayGuard:
    """check() accepts a frame (returning a Verdict) or raises FrameError with reason
    duplicate | replay | counter_jump. Counters live in memory: after a gateway restart the first
    frame of each device is trusted (a known limit: see README "Replay protection")."""

    def __init__(self, forward_window: int, reset_quiet_s: float) -> None:
        if not 1 <= forward_window < FCNT_MOD // 2:
            raise ValueError(f"forward window {forward_window} is outside 1..32767")
        self.window = forward_window
        self.quiet_s = reset_quiet_s
        self._tracks: dict[int, _Track] = {}

    def last(self, device: int) -> int | None:
        t = self._tracks.get(device)
        return t.last if t else None

    def check(self, device: int, fcnt: int, now_mono: float) -> Verdict:
        t = self._tracks.get(device)
        if t is None:
            self._tracks[device] = _Track(fcnt, now_mono)
            return Verdict.FIRST
        ahead = (fcnt - t.last) % FCNT_MOD  # modular distance: 65535 -> 0 is one step ahead
        if ahead == 0:
            raise FrameError("duplicate", fcnt.to_bytes(2, "little"))
        if ahead <= self.window:
            t.last, t.seen_mono = fcnt, now_mono
            return Verdict.ACCEPT
        if fcnt <= RESET_MAX_FCNT and now_mono - t.seen_mono >= self.quiet_s:
            t.last, t.seen_mono = fcnt, now_mono
            return Verdict.RESET
        # Behind us (within half the counter space) is a replay; further ahead than the window a jump.
        raise FrameError("replay" if ahead >= FCNT_MOD // 2 else "counter_jump", fcnt.to_bytes(2, "little"))
