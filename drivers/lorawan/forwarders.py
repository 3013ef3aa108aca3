"""The packet forwarders talking to this port: where each one's PULL_DATA came from (the downlink path),
when it was last heard, its latest `stat`, and the silent-forwarder verdict that takes the driver down."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Forwarder:
    eui: str
    version: int = 2
    pull_addr: tuple[str, int] | None = None  # PULL_RESP goes here (PROTOCOL.md §5: learnt from PULL_DATA)
    last_pull_mono: float | None = None
    last_push_mono: float | None = None
    stat: dict[str, Any] = field(default_factory=dict)
    pulls: int = 0
    pushes: int = 0
    silent: bool = False

    def last_heard(self) -> float | None:
        times = [t for t in (self.last_pull_mono, self.last_push_mono) if t is not None]
        return max(times) if times else None

    def snapshot(self, now: float) -> dict[str, Any]:
        def age(t: float | None) -> float | None:
            return None if t is None else round(now - t, 1)
        return {"pull_addr": f"{self.pull_addr[0]}:{self.pull_addr[1]}" if self.pull_addr else None,
                "protocol_version": self.version, "last_pull_age_s": age(self.last_pull_mono),
                "last_push_age_s": age(self.last_push_mono), "pulls": self.pulls, "pushes": self.pushes,
                "silent": self.silent, "stat": dict(self.stat)}


# A courtyard has one concentrator, two at most. With `gateway_euis` empty (any forwarder, the default) every
# new EUI in a PUSH_DATA or PULL_DATA got an entry, kept for good: a flood of datagrams with random EUIs grew
# the table (and the driver's health, and the retained status) without bound and the 1 s tick with it.
MAX_FORWARDERS = 8


class Forwarders:
    def __init__(self, timeout_s: float, started_mono: float, allowed: list[str]) -> None:
        self.timeout_s = timeout_s
        self.started = started_mono
        self.allowed = {e.lower() for e in allowed}
        self.by_eui: dict[str, Forwarder] = {}

    def admit(self, eui: bytes, now: float) -> tuple[Forwarder | None, str]:
        """(the forwarder with this EUI, "") or (None, why not): `unknown_gateway_eui` when gateway_euis is set
        and does not list it; `forwarder_table_full` when MAX_FORWARDERS are known and every one of them was
        heard within the timeout (a silent one makes room: the longest silent goes). A forwarder already
        known is never pushed out by new EUIs, however many arrive."""
        key = eui.hex()
        if self.allowed and key not in self.allowed:
            return None, "unknown_gateway_eui"
        fwd = self.by_eui.get(key)
        if fwd is None:
            if len(self.by_eui) >= MAX_FORWARDERS:
                silent = [f for f in self.by_eui.values() if now - (f.last_heard() or self.started) > self.timeout_s]
                if not silent:
                    return None, "forwarder_table_full"
                del self.by_eui[min(silent, key=lambda f: f.last_heard() or self.started).eui]
            fwd = self.by_eui[key] = Forwarder(key)
        return fwd, ""

    def down_reason(self, now: float) -> str:
        """"" while some forwarder was heard within the timeout, else why the radio side is down."""
        heard = [f.last_heard() for f in self.by_eui.values()]
        latest = max((t for t in heard if t is not None), default=None)
        if latest is None:
            if now - self.started > self.timeout_s:
                return f"no packet forwarder has contacted this port in {now - self.started:.0f} s"
            return ""
        if now - latest > self.timeout_s:
            return f"packet forwarder silent for {now - latest:.0f} s (no PULL_DATA keepalive, no PUSH_DATA)"
        return ""

    def downlink_target(self, eui: str) -> Forwarder | None:
        fwd = self.by_eui.get(eui)
        if fwd is not None and fwd.pull_addr is not None:
            return fwd
        return next((f for f in self.by_eui.values() if f.pull_addr is not None and not f.silent), None)
