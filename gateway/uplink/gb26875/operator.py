"""查岗 (operator check, type 91): the centre asks whether a person is on duty in the guard room.

A person must answer within the centre's window, by the guard room's acknowledge button (an Event of kind
BUTTON) or the CLI; the answer goes up as a type-24 operation record with the inspection-reply bit.
Nobody answering is the point of the check: we never answer on our own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from structlog.typing import FilteringBoundLogger

from gateway.clock import Clock
from gateway.errors import CommandRejected


@dataclass
class PendingCheck:
    requested_mono_s: float
    deadline_mono_s: float
    requested_wall_s: float


class OperatorChecks:
    """At most one check pending (a new request replaces the old one: the centre counts the latest)."""

    def __init__(self, clock: Clock, log: FilteringBoundLogger, counters: dict[str, int]) -> None:
        self.clock = clock
        self.log = log
        self.counters = counters
        self.pending: PendingCheck | None = None
        self.answers: list[str] = []  # who answered, waiting to be sent (kept across reconnects)
        self.last_answered_by = ""

    def requested(self, window_s: float) -> None:
        now = self.clock.monotonic()
        self.pending = PendingCheck(now, now + window_s, self.clock.wall())
        self.counters["operator_checks"] += 1
        self.log.warning("operator_check_requested", window_s=window_s)

    def expire(self) -> None:
        """Called from the client's loop: a window that passed unanswered is counted once."""
        if self.pending is not None and self.clock.monotonic() > self.pending.deadline_mono_s:
            self.pending = None
            self.counters["operator_checks_missed"] += 1
            self.log.warning("operator_check_missed")

    def confirm(self, by: str) -> None:
        """A person confirmed; raises CommandRejected when no check is open."""
        self.expire()
        if self.pending is None:
            raise CommandRejected("no_operator_check", "the centre has not asked, or its window has passed")
        self.pending = None
        self.answers.append(by)
        self.last_answered_by = by
        self.counters["operator_checks_answered"] += 1
        self.log.info("operator_check_answered", by=by)

    def button_pressed(self, device: str, stamp: Any) -> bool:
        """An acknowledge-button record: it answers only a check that was open when it was pressed."""
        check = self.pending
        if check is None:
            return False
        if stamp.boot_id == self.clock.boot_id:
            pressed_after = stamp.mono_ns / 1e9 >= check.requested_mono_s
        else:
            pressed_after = stamp.wall_s >= check.requested_wall_s
        if not pressed_after:
            return False
        self.confirm(f"button:{device}")
        return True

    def snapshot(self) -> dict[str, Any]:
        check = self.pending
        left = None if check is None else round(max(0.0, check.deadline_mono_s - self.clock.monotonic()), 1)
        return {"pending": check is not None, "seconds_left": left, "last_answered_by": self.last_answered_by,
                "answers_unsent": len(self.answers)}
