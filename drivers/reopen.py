"""Reopening a lost port or modem: the capped, jittered backoff and the first-WARNING-then-DEBUG report every
driver's run loop shares (issue 16). The delay policy is gateway.clock.Backoff, the supervisor's own."""

from __future__ import annotations

import random

from gateway.clock import Backoff
from gateway.errors import EventLog, FailureLog

FIRST_DELAY_S = 0.5  # a replugged USB adapter is usually back within a second (reliability R12)


class Reopen:
    """One port's (or modem's) reopen state: call `failed` after each failed open or lost session and wait the
    delay it returns; call `opened` once the port works again."""

    def __init__(self, log: EventLog, cap_s: float, first_delay_s: float = FIRST_DELAY_S, rng: random.Random | None = None) -> None:
        self.backoff = Backoff(base_s=first_delay_s, cap_s=cap_s, rng=rng)
        self.report = FailureLog(log)

    @property
    def tries(self) -> int:
        """Consecutive failures since the port last worked."""
        return self.report.failures

    def failed(self, event: str, exc: BaseException, **kw: object) -> float:
        """Report one failure (WARNING the first time, DEBUG after) and return the seconds to wait."""
        self.report.failed(event, error=str(exc), tries=self.tries + 1, **kw)
        return self.backoff.next_delay()

    def opened(self, event: str | None = "port_reopened", **kw: object) -> bool:
        """The port works: one INFO if it had failed; the next failure starts the backoff afresh."""
        self.backoff.reset()
        return self.report.recovered(event, **kw)
