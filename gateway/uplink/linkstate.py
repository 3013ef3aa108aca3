"""The uplink's connection state and its truthful account of an outage: since when, why, for how long.

The daemon derives the local "trouble" indication from this (issue 15 item 7): `up`, `reason` (a
gateway/uplink/faults.py word) and `down_for_s`, counted from the last moment the link was up.
"""

from __future__ import annotations

import enum
from typing import Any

from gateway.clock import Clock
from gateway.uplink import faults


class ConnState(enum.StrEnum):
    DISCONNECTED = "disconnected"  # not started, or stopped
    PROBING = "probing"  # TCP-probing the broker port
    BACKOFF = "backoff"  # broker reachable, waiting before the next full connect
    CONNECTING = "connecting"
    CONNECTED = "connected"
    NOT_AUTHORIZED = "not_authorized"  # CONNACK auth failure, TLS refused, or PUBACK 135 (ACL)
    CONFIG_ERROR = "config_error"  # TLS files missing/invalid/expired, or the broker URL unusable: no attempt made


# States that describe a fault an operator must fix: kept through the retries until a connect succeeds.
STICKY = frozenset({ConnState.NOT_AUTHORIZED, ConnState.CONFIG_ERROR})


class LinkState:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.state = ConnState.DISCONNECTED
        self.since_mono = clock.monotonic()
        self.since_wall = clock.wall()
        self.reason, self.detail = faults.STARTING, ""
        self._outage_reason = ""
        self.down_since_mono: float | None = clock.monotonic()  # None while connected
        self.down_since_wall: float | None = clock.wall()
        self.last_down: dict[str, Any] = {}  # the outage that ended with the last connect: reason, for_s

    def set(self, state: ConnState, reason: str = "", detail: str = "") -> None:
        if state != ConnState.CONNECTED and reason:
            self._note(reason, detail)
        if state == self.state:
            return
        self.state = state
        self.since_mono, self.since_wall = self.clock.monotonic(), self.clock.wall()
        if state == ConnState.CONNECTED:
            if self.down_since_mono is not None and self._outage_reason:
                self.last_down = {"reason": self._outage_reason, "for_s": round(self.since_mono - self.down_since_mono, 1),
                                  "until_wall_s": self.since_wall}
            self._outage_reason = ""
            self.down_since_mono = self.down_since_wall = None
            self.reason, self.detail = "", ""
        elif self.down_since_mono is None:
            self.down_since_mono, self.down_since_wall = self.since_mono, self.since_wall

    def phase(self, state: ConnState, reason: str = "", detail: str = "") -> None:
        """A step of the retry loop: does not overwrite a sticky fault state (STICKY) until connected."""
        if self.state in STICKY:
            if reason and self.reason not in faults.CONFIG_REASONS:
                self._note(reason, detail)
            return
        self.set(state, reason, detail)

    def _note(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        if reason not in (faults.STARTING, faults.CONNECTING):
            self._outage_reason = reason  # what the retained status reports once the outage is over

    def down_for_s(self) -> float:
        return 0.0 if self.down_since_mono is None else self.clock.monotonic() - self.down_since_mono

    def fields(self, publish_fault: str) -> dict[str, Any]:
        """The health() fields about the link. publish_fault: the drain's PUBACK refusal, if any."""
        connected = self.state == ConnState.CONNECTED
        up = connected and not publish_fault
        reason = "" if up else (faults.PUBLISH_REFUSED if connected else self.reason)
        return {
            "state": str(self.state), "up": up, "reason": reason, "detail": "" if up else (publish_fault if connected else self.detail),
            "config_fault": reason in faults.CONFIG_REASONS, "since_wall_s": self.since_wall,
            "down_since_wall_s": self.down_since_wall, "down_for_s": round(self.down_for_s(), 1), "last_down": self.last_down,
            "state_age_s": round(self.clock.monotonic() - self.since_mono, 1), "since_wall": self.since_wall,
        }
