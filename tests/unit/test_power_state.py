"""NUT ups.status flags -> power conditions and their events (pure), and the [power] config bounds."""

from __future__ import annotations

import msgspec
import pytest

from gateway.clock import ManualClock
from gateway.power.config import PowerSection
from gateway.power.nut import UpsReading
from gateway.power.state import PowerState

CLOCK = ManualClock()


def reading(status: str, charge: str = "90") -> UpsReading:
    return UpsReading.from_vars({"ups.status": status, "battery.charge": charge, "battery.runtime": "oops"})


def names(events) -> list[str]:
    return [e.name for e in events]


def test_scripted_sequence_gives_each_event_once_in_order():
    s = PowerState()
    assert s.update(reading("OL CHRG"), CLOCK.now()) == []
    assert names(s.update(reading("OB DISCHRG"), CLOCK.now())) == ["mains_lost", "on_battery"]
    assert s.update(reading("OB DISCHRG"), CLOCK.now()) == []
    ev = s.update(reading("OB LB", "8"), CLOCK.now())
    assert names(ev) == ["battery_low"] and ev[0].charge_pct == 8.0 and ev[0].runtime_s is None
    assert ev[0].body()["conditions"] == {"mains_lost": True, "on_battery": True, "battery_low": True, "backup_fault": False}
    assert names(s.update(reading("OL CHRG"), CLOCK.now())) == ["mains_restored", "on_mains", "battery_ok"]


def test_replace_battery_and_off_states():
    s = PowerState()
    assert names(s.update(reading("OL RB"), CLOCK.now())) == ["backup_fault"]
    assert names(s.update(reading("OFF"), CLOCK.now())) == ["mains_lost", "backup_restored"]


def test_unreadable_is_a_backup_fault_from_the_second_failure_and_keeps_mains_state():
    s = PowerState()
    s.update(reading("OB"), CLOCK.now())
    assert s.unreadable("unreachable", CLOCK.now()) == []
    ev = s.unreadable("unreachable", CLOCK.now())
    assert names(ev) == ["backup_fault"] and "unreachable" in ev[0].reason
    assert names(s.update(reading("OB"), CLOCK.now())) == ["backup_restored"]


def test_config_bounds_keep_the_deadline():
    assert PowerSection().configured is False
    with pytest.raises(msgspec.ValidationError, match="deadline_s"):
        msgspec.convert({"ups": "x", "poll_period_s": 30, "timeout_s": 5, "deadline_s": 60}, PowerSection)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"ups": "x", "deadline_s": 120}, PowerSection)  # > 100 s is not allowed at all
    assert msgspec.convert({"ups": "x", "poweroff_command": ["true"]}, PowerSection).poweroff_command == ("true",)
