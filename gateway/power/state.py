"""What a UPS reading means for the gateway: four power conditions and the typed events of their changes.

Pure (no I/O, no clock): readings and read failures in, condition changes out. NUT `ups.status` flags
(NUT developer guide, "ups.status"): OL on line, OB on battery, LB low battery, RB replace battery,
CHRG/DISCHRG, BYPASS, OFF, FSD forced shutdown.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from gateway.model import Stamp
from gateway.power.nut import UpsReading


class Condition(enum.StrEnum):
    """The four conditions issue 23 names; each raises an event when it starts and when it ends."""

    MAINS_LOST = "mains_lost"  # GB/T 26875.3 type 21 b3 mains fault
    ON_BATTERY = "on_battery"  # the switchover happened: the gateway runs from its backup
    BATTERY_LOW = "battery_low"  # LB: the backup is nearly spent (type 21 b4 backup power fault)
    BACKUP_FAULT = "backup_fault"  # RB, or the UPS cannot be read at all (type 21 b4)


# The event name when a condition ends (the start uses the condition's own name).
RECOVERY = {Condition.MAINS_LOST: "mains_restored", Condition.ON_BATTERY: "on_mains",
            Condition.BATTERY_LOW: "battery_ok", Condition.BACKUP_FAULT: "backup_restored"}
# Raise order within one reading: the fault before its consequence, so the centre sees b3 first.
ORDER = (Condition.MAINS_LOST, Condition.ON_BATTERY, Condition.BATTERY_LOW, Condition.BACKUP_FAULT)


@dataclass(frozen=True)
class PowerEvent:
    """One change of one condition, with the whole picture at that moment (the record is self-contained)."""

    name: str  # "mains_lost" ... or its recovery "mains_restored" ...
    condition: Condition
    active: bool
    reason: str  # "OB", "OB LB", "RB", "ups_unreadable: data_stale" ...
    stamp: Stamp
    conditions: dict[str, bool] = field(default_factory=dict)
    ups_status: str = ""
    charge_pct: float | None = None
    runtime_s: float | None = None

    def body(self) -> dict[str, Any]:
        """The outbox record body (docs/power.md)."""
        return {"kind": "power", "event": self.name, "condition": str(self.condition), "active": self.active,
                "reason": self.reason, "conditions": dict(self.conditions), "ups_status": self.ups_status,
                "battery_charge_pct": self.charge_pct, "battery_runtime_s": self.runtime_s}


def conditions_of(reading: UpsReading) -> dict[Condition, str]:
    """Active conditions -> why."""
    flags = reading.flags
    out: dict[Condition, str] = {}
    # Neither OL nor OB (e.g. "OFF", "BYPASS" alone) is not "on mains" either: count it as mains lost.
    if "OB" in flags or "OL" not in flags:
        out[Condition.MAINS_LOST] = reading.raw_status or "no status"
    if "OB" in flags:
        out[Condition.ON_BATTERY] = reading.raw_status
    if "LB" in flags:
        out[Condition.BATTERY_LOW] = reading.raw_status
    if "RB" in flags:
        out[Condition.BACKUP_FAULT] = "RB (replace battery)"
    return out


class PowerState:
    """The current conditions and the last good reading; `update` / `unreadable` return the events."""

    def __init__(self) -> None:
        self.active: dict[Condition, str] = {}
        self.reading: UpsReading | None = None
        self.unreadable_reason = ""
        self.failures = 0  # consecutive failed reads

    def update(self, reading: UpsReading, stamp: Stamp) -> list[PowerEvent]:
        self.reading = reading
        self.failures = 0
        self.unreadable_reason = ""
        return self._apply(conditions_of(reading), stamp)

    def unreadable(self, reason: str, stamp: Stamp, fault_after: int = 2) -> list[PowerEvent]:
        """A failed read. From the `fault_after`-th in a row, backup power counts as faulty (we can no
        longer vouch for it); mains and battery keep their last known state rather than flapping."""
        self.failures += 1
        self.unreadable_reason = reason
        if self.failures < fault_after:
            return []
        wanted: dict[Condition, str] = {c: why for c, why in self.active.items() if c != Condition.BACKUP_FAULT}
        wanted[Condition.BACKUP_FAULT] = f"ups_unreadable: {reason}"
        return self._apply(wanted, stamp)

    def _apply(self, wanted: dict[Condition, str], stamp: Stamp) -> list[PowerEvent]:
        changes = [(c, c in wanted) for c in ORDER if (c in wanted) != (c in self.active)]
        self.active = dict(wanted)
        snapshot = {str(c): c in self.active for c in ORDER}
        r = self.reading
        return [PowerEvent(str(c) if on else RECOVERY[c], c, on, wanted.get(c, r.raw_status if r else ""), stamp,
                           snapshot, r.raw_status if r else "", r.charge_pct if r else None, r.runtime_s if r else None)
                for c, on in changes]
