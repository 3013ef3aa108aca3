"""`gateway test fire` / `gateway test power` on the daemon side: the injected alarm carries the test flag,
clears itself, and both tests are recorded for the platform and the journal."""

from __future__ import annotations

import msgspec
import pytest
import structlog

from gateway.clock import ManualClock
from gateway.errors import CommandRejected
from gateway.model import Device, DeviceType, EventKind
from gateway.power.state import Condition, PowerEvent
from gateway.selfcheck.config import SelfCheckSection
from gateway.selfcheck.inspections import Inspections
from gateway.selfcheck.journal import Journal
from tests.support.wait import async_wait_for
from tests.unit.test_selfcheck import Records

DEVICES = {"relay": Device("relay", "relay", DeviceType.RELAY_BOX, "rs485", 9),
           "gas-1": Device("gas-1", "gas", DeviceType.GAS, "lora", 2)}


def make(tmp_path, has_ups: bool = True, **over):
    emitted: list = []
    cfg = msgspec.convert({"fire_test_clear_after_s": 1} | over, SelfCheckSection)
    clock = ManualClock()
    insp = Inspections(cfg, clock, structlog.get_logger(), Journal(str(tmp_path / "t.jsonl")), Records(), "gw-1",
                       emitted.append, DEVICES, has_ups)
    return insp, emitted, clock


async def test_fire_test_injects_a_flagged_alarm_and_clears_it(tmp_path):
    insp, emitted, _ = make(tmp_path)
    result = await insp.fire_test(None, "cli:wang")
    assert result["device"] == "gas-1"  # the first detector; the relay box is not one
    ev = emitted[0]
    assert (ev.kind, ev.code, ev.detail, ev.via) == (EventKind.ALARM, "gas_high", {"test": True, "by": "cli:wang"}, "test")
    await async_wait_for(lambda: len(emitted) == 2, what="test alarm cleared")
    assert emitted[1].kind == EventKind.ALARM_CLEARED and emitted[1].detail["test"] is True
    assert insp.records.rows[0][1] == "event.test" and insp.records.rows[0][3]["kind"] == "fire_test"
    assert [e.kind for e in insp.journal.read()] == ["fire_test"]
    with pytest.raises(CommandRejected, match="not_fire_device"):
        await insp.fire_test("relay", "cli:wang")
    await insp.stop()


def pev(clock, active: bool) -> PowerEvent:
    return PowerEvent("on_battery" if active else "on_mains", Condition.ON_BATTERY, active, "OB", clock.now(), charge_pct=70.0)


async def test_power_test_passes_on_battery_and_back(tmp_path):
    insp, _, clock = make(tmp_path)
    await insp.power_test_start("cli:li", window_s=30)
    insp.on_power_event(pev(clock, True))
    clock.advance(12)
    insp.on_power_event(pev(clock, False))
    await async_wait_for(lambda: insp.power_test_status()["state"] != "running", what="power test done")
    status = insp.power_test_status()
    assert status["state"] == "passed" and "after 12 s" in status["summary"]
    entry = insp.journal.read()[-1]
    assert entry.kind == "power_test" and entry.ok


async def test_power_test_fails_when_nothing_happens_and_needs_a_ups(tmp_path):
    insp, _, _ = make(tmp_path)
    await insp.power_test_start("cli:li", window_s=0.05)
    await async_wait_for(lambda: insp.power_test_status()["state"] != "running", what="window over")
    assert insp.power_test_status()["state"] == "failed" and "was mains cut" in insp.power_test_status()["summary"]
    no_ups, _, _ = make(tmp_path, has_ups=False)
    with pytest.raises(CommandRejected, match="no_ups"):
        await no_ups.power_test_start("cli:li")
