"""When each slave on a bus is polled next: fixed-rate periods, capped exponential backoff for
silent slaves, offline after N failures. Pure state, no I/O: `now` is always passed in.

Why it keeps healthy slaves on time (issue 4: ThingsBoard fell from 1.0 to 0.33 polls/s when a
sixth slave went silent): a silent slave is tried at a decaying rate (min(period * 2**(n-1), cap)),
so it holds the half-duplex bus for one timeout per backoff step; the polls of the others that
this delayed are caught up right after, up to `catch_up_periods` periods back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COUNTERS = ("polls", "ok", "timeouts", "exceptions", "crc_errors", "garbage", "truncated",
            "unexpected_replies", "late_discarded", "invalid_values", "writes", "write_errors")


@dataclass
class SlaveState:
    unit: int
    period_s: float
    next_due: float
    failures: int = 0  # consecutive failed polls
    online: bool | None = None  # None until the first poll settles it
    busy: bool = False  # a poll of this slave is in progress: never start a second one
    last_ok_mono: float | None = None
    last_error: str = ""
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    @property
    def state(self) -> str:
        if self.online is None:
            return "unknown"
        if not self.online:
            return "offline"
        return "backoff" if self.failures else "ok"


class Schedule:
    def __init__(self, slaves: list[SlaveState], backoff_cap_s: float, offline_after: int, catch_up_periods: int) -> None:
        self.slaves = {s.unit: s for s in slaves}
        self.backoff_cap_s = backoff_cap_s
        self.offline_after = offline_after
        self.catch_up_periods = catch_up_periods

    def due(self, now: float) -> SlaveState | None:
        """The slave most overdue, or None. Earliest-due-first keeps catch-up fair."""
        ready = [s for s in self.slaves.values() if not s.busy and s.next_due <= now]
        return min(ready, key=lambda s: s.next_due, default=None)

    def next_wake(self) -> float:
        idle = [s.next_due for s in self.slaves.values() if not s.busy]
        return min(idle, default=float("inf"))

    def succeeded(self, s: SlaveState, now: float) -> bool:
        """Record an answered poll; True when the slave just came back online."""
        came_back = s.online is False
        s.failures, s.online, s.last_ok_mono, s.last_error = 0, True, now, ""
        s.next_due += s.period_s
        if s.next_due < now - self.catch_up_periods * s.period_s:
            s.next_due = now  # too far behind (long stall): resynchronise instead of bursting
        return came_back

    def failed(self, s: SlaveState, now: float, why: str) -> bool:
        """Record an unanswered poll; True when the slave just crossed into offline."""
        s.failures += 1
        s.last_error = why
        delay = min(s.period_s * 2 ** min(s.failures - 1, 30), max(self.backoff_cap_s, s.period_s))
        s.next_due = now + delay
        if s.failures >= self.offline_after and s.online is not False:
            s.online = False
            return True
        return False
