"""Actions at unit level: SMS policy, recipients, text, rate limit; sounder pattern; task isolation."""

from __future__ import annotations

import asyncio

import pytest

from gateway import log as logsetup
from gateway.actions.schema import DEFAULT_TIERS, Notify, Sms, Sounder
from gateway.actions.sms import RateLimiter, policy_allows, recipients, render
from gateway.actions.sounder import SounderControl
from gateway.actions.tasks import ActionTasks
from gateway.clock import ManualClock
from gateway.errors import ModemUnavailable
from gateway.model import Alarm, AlarmState, ContactRole, Severity
from tests.unit.rules_support import CONTACTS, DEVICES, FakeContext

POLICY = {
    "critical_always_even_with_uplink_up": (Severity.CRITICAL, 0.0, True),
    "major_not_while_uplink_up": (Severity.MAJOR, 0.0, False),
    "major_not_at_exactly_the_limit": (Severity.MAJOR, 60.0, False),
    "major_once_uplink_down_longer": (Severity.MAJOR, 60.1, True),
    "minor_never": (Severity.MINOR, 9999.0, False),
}


@pytest.mark.parametrize("severity,down_s,allowed", POLICY.values(), ids=POLICY.keys())
def test_sms_policy_per_severity(severity, down_s, allowed):
    assert policy_allows(Sms(), severity, down_s) is allowed


def test_recipients_of_first_tier_are_the_devices_relatives_then_guard_and_grid_worker():
    got = recipients(DEFAULT_TIERS[0].roles, DEVICES["smoke-401"], list(CONTACTS))
    assert [c.id for c in got] == ["wang-son", "guard", "grid-li"]
    assert [c.id for c in recipients((ContactRole.RELATIVE,), DEVICES["gas-401"], list(CONTACTS))] == []


def _alarm(synced: bool) -> Alarm:
    clock = ManualClock(wall_s=1_795_893_120.0, synced=synced)
    return Alarm("a1", "smoke", "smoke-401", Severity.CRITICAL, AlarmState.RAISED, "烟感报警", clock.now(), clock.now())


IDENT = type("Ident", (), {"community": "新鸿社区", "courtyard": "3号院"})()


def test_text_has_location_and_local_time():
    text = render(Notify().templates.raised, Notify(), _alarm(True), DEVICES["smoke-401"], IDENT, 0, 0.0)
    assert text == "【社区消防】11月29日03:12 新鸿社区3号院2栋1单元401室（独居老人） 烟感报警，请立即联系老人或拨打119"  # issue 18: date, 室, resident, advice


def test_text_never_prints_an_unsynced_clock_time():
    notify = Notify()
    assert "刚刚" in render(notify.templates.raised, notify, _alarm(False), DEVICES["smoke-401"], IDENT, 0, 0.2)
    text = render(notify.templates.escalated, notify, _alarm(False), DEVICES["smoke-401"], IDENT, 2, 10.5)
    assert "10分钟前" in text and "三级上报" in text and "03:12" not in text


def test_rate_limiter_interval_hourly_cap_and_release():
    rl = RateLimiter(min_interval_s=30, max_per_hour=3)
    assert rl.allow("+86", 0) and not rl.allow("+86", 29.9) and rl.allow("+86", 30)
    assert rl.allow("+86", 60) and not rl.allow("+86", 90)  # 3 in the hour
    assert rl.allow("+86", 3600)  # the first one left the window
    assert rl.allow("+87", 3600)  # per recipient
    rl.release("+87", 3600)
    assert rl.allow("+87", 3601)  # a failed send does not count


PATTERN = {
    "continuous_until_max_duration": (Sounder(device="r", off_s=0, max_duration_s=10), [0, 5, 9.9, 10], [True, True, True, False]),
    "pulsed_one_on_one_off": (Sounder(device="r", on_s=1, off_s=1), [0, 0.99, 1.0, 1.99, 2.0], [True, True, False, False, True]),
}


@pytest.mark.parametrize("cfg,ages,expected", PATTERN.values(), ids=PATTERN.keys())
def test_sounder_pattern(cfg, ages, expected):
    snd = SounderControl(cfg, FakeContext(), ActionTasks(logsetup.get(), lambda *a: None), logsetup.get())
    assert [snd.desired([100.0], True, 100.0 + a)["sounder"] for a in ages] == expected


def test_newest_alarm_restarts_the_sounder_time_limit():
    snd = SounderControl(Sounder(device="r", max_duration_s=10), FakeContext(), ActionTasks(logsetup.get(), lambda *a: None), logsetup.get())
    assert snd.desired([0.0, 8.0], True, 15.0)["sounder"] is True
    assert snd.desired([0.0], True, 15.0) == {"sounder": False, "strobe": True}


async def test_a_failing_action_reports_a_fault_and_never_blocks_the_others():
    logsetup.setup("critical")
    faults = []
    tasks = ActionTasks(logsetup.get(), lambda action, dev, exc: faults.append((action, dev, type(exc).__name__)))
    done = asyncio.Event()

    async def fails():
        raise ModemUnavailable("no SIM")

    async def hangs():
        await asyncio.sleep(3600)

    async def works():
        done.set()

    tasks.spawn("sms", "smoke-401", fails())
    tasks.spawn("sounder", "guard-relay", hangs())
    tasks.spawn("sounder", "guard-relay", works())
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0)
    assert faults == [("sms", "smoke-401", "ModemUnavailable")]
    assert tasks.pending() == 1  # only the hung one
    await tasks.cancel()
    assert tasks.pending() == 0


def test_gas_text_carries_safety_advice_and_unsynced_time_has_no_date():
    gas = render(Notify().templates.raised, Notify(), _alarm(True), DEVICES["gas-401"], IDENT, 0, 0.0)
    assert "开窗通风、勿开关电器" in gas and "11月29日03:12" in gas
    late = render(Notify().templates.escalated, Notify(), _alarm(False), DEVICES["smoke-401"], IDENT, 1, 3.0)
    assert late.startswith("【社区消防】3分钟前 ") and "月" not in late and "二级上报" in late
