"""The daily self-check's items, judged from the daemon's own status snapshot (pure: status in, results out).

A subset of `gateway selftest` that needs no person and makes no sound: each subsystem's health as the
daemon sees it. A gateway without a UPS is a WARN (a supported installation), never a FAIL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["pass", "warn", "fail"]


@dataclass(frozen=True)
class CheckResult:
    name: str
    level: Level
    reason: str

    @property
    def ok(self) -> bool:
        return self.level != "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "level": self.level, "reason": self.reason}


def judge(status: dict[str, Any]) -> list[CheckResult]:
    out = [_trouble(status), *_drivers(status), _store(status), _link(status, "uplink", "platform (MQTT)"),
           _clock(status), _power(status)]
    if "gb26875" in status:
        out.append(_link(status, "gb26875", "fire centre (GB/T 26875.3)"))
    return out


def _trouble(status: dict[str, Any]) -> CheckResult:
    # Our own failure is one of the faults: leave it out, or one bad day would fail every later check.
    faults = [f for f in status.get("trouble") or [] if f.get("source") != "selfcheck"]
    if faults:
        return CheckResult("faults", "fail", "; ".join(f"{f.get('source')}: {f.get('reason')}" for f in faults)[:300])
    return CheckResult("faults", "pass", "no active fault")


def _drivers(status: dict[str, Any]) -> list[CheckResult]:
    out = []
    for name, h in sorted((status.get("drivers") or {}).items()):
        state = str((h or {}).get("state", "?"))
        level: Level = "fail" if state == "down" else "warn" if state == "degraded" else "pass"
        out.append(CheckResult(f"port:{name}", level, state))
    return out


def _store(status: dict[str, Any]) -> CheckResult:
    store = status.get("store")
    if store is None:
        return CheckResult("store", "fail", "outbox not open")
    fault = store.get("fault") or ""
    return CheckResult("store", "fail" if fault else "pass", fault or "open")


def _link(status: dict[str, Any], key: str, label: str) -> CheckResult:
    h = status.get(key)
    if h is None:
        return CheckResult(key, "warn", f"{label}: not configured or not started")
    state = str(h.get("state", "?"))
    if state == "connected":
        return CheckResult(key, "pass", f"{label}: connected")
    return CheckResult(key, "fail", f"{label}: {state} {h.get('last_error') or h.get('fault') or ''}".strip())


def _clock(status: dict[str, Any]) -> CheckResult:
    if status.get("clock_synced"):
        return CheckResult("clock", "pass", "synchronised")
    return CheckResult("clock", "warn", "not synchronised: record times are provisional")


def _power(status: dict[str, Any]) -> CheckResult:
    p = status.get("power")
    if p is None or p.get("state") == "off":
        return CheckResult("power", "warn", "no UPS configured: a mains cut stops the gateway ([power] ups)")
    state = p.get("state")
    level: Level = "pass" if state == "up" else "fail"
    return CheckResult("power", level, f"{state}: {p.get('reason')}")
