"""The call flows end to end (issue 22): rule engine -> escalation -> the real SMS driver -> the EC200
simulator over a pty, whose scripted callees answer, ignore, are busy, or reboot the module mid-call."""

from __future__ import annotations

import asyncio

from drivers.base import CallOutcome
from drivers.cellular.simcall import Callee
from gateway.actions.schema import Call, Notify, Sms, Sounder, Tier
from gateway.model import AlarmState, ContactRole, EventKind
from tests.integration.test_cellular_sms import sms_rig
from tests.support.wait import async_wait_for
from tests.unit.rules_support import FakeContext
from tests.unit.test_rules_engine import SMOKE as SMOKE_SMS_ONLY
from tests.unit.test_rules_engine import Rig

SMOKE = {**SMOKE_SMS_ONLY, "actions": ["sounder", "sms", "call"]}

SON, GUARD, GRID = "+8613800000005", "+8613800000001", "+8613800000002"
R, G, W = ContactRole.RELATIVE, ContactRole.GUARD_ROOM, ContactRole.GRID_WORKER


class DriverContext(FakeContext):
    """The daemon's routing (DaemonActions.send_sms / .call) onto one real SmsDriver."""

    def __init__(self, driver) -> None:
        super().__init__()
        self.driver = driver

    async def send_sms(self, number: str, text: str, urgent: bool = False) -> None:
        await self.driver.send_sms(number, text, urgent=urgent)

    async def call(self, number: str, text: str, ring_timeout_s: float, key_wait_s: float, preemptible: bool = False) -> CallOutcome:
        return await self.driver.call(number, text, ring_timeout_s, key_wait_s, preemptible=preemptible)


NOTIFY = Notify(sounder=Sounder(device="guard-relay"), sms=Sms(retry_s=1.0, min_interval_s=0),
                tiers=(Tier(after_s=0, roles=(R, G, W), actions=("sms", "call")),),
                call=Call(min_interval_s=0, ring_timeout_s=1.0, key_wait_s=1.0, retry_s=1.0))


async def _run_until(rig, cond, what, limit=60):
    for _ in range(limit):
        await rig.tick(0.5)
        if cond():
            return
        await asyncio.sleep(0.05)  # real time for the module: the pty and the simulator's timers
    raise AssertionError(f"timed out waiting for {what}")


async def _engine(tmp_path, driver):
    rig = Rig(tmp_path, rule_dicts=(SMOKE,), notify=NOTIFY, ctx=DriverContext(driver))
    await rig.engine.start()
    await rig.engine.on_item(rig.feed.event("smoke-401", EventKind.ALARM, "smoke"))
    return rig


async def test_no_answer_then_busy_then_the_grid_worker_acknowledges_by_key(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        sim.voice.callees.update({SON: Callee(answer_after_rings=None), GUARD: Callee(busy=True),
                                  GRID: Callee(answer_after_rings=2, key="1")})
        rig = await _engine(tmp_path, driver)
        try:
            await _run_until(rig, lambda: rig.engine.active()[0].state == AlarmState.ACKNOWLEDGED, "ack by phone")
            assert rig.engine.active()[0].acknowledged_by == "call:grid-li"
            assert [(c.number, c.outcome) for c in sim.voice.calls] == [(SON, "ended_by_gateway"), (GUARD, "busy"), (GRID, "ended_by_gateway")]
            assert "确认请按1" in sim.voice.calls[2].spoken[0]
            await async_wait_for(lambda: len(sim.texts()) == 3, 10, what="three SMS")
            assert {n for n, _ in sim.texts()} == {SON, GUARD, GRID}
        finally:
            await rig.engine.stop()
            rig.outbox.close()


async def test_module_reboot_mid_call_the_sms_still_go_and_the_call_is_retried(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        sim.voice.callees[SON] = Callee(answer_after_rings=1, reboot_on_answer=True)
        rig = await _engine(tmp_path, driver)
        try:
            await async_wait_for(lambda: sim.reboots == 1, 10, what="reboot mid-call")
            sim.voice.callees[SON] = Callee(answer_after_rings=1, key="1")
            await _run_until(rig, lambda: len(sim.texts()) == 3 and rig.engine.active()[0].state == AlarmState.ACKNOWLEDGED,
                             "SMS after the reboot and the son's ack on the retried call")
            assert {n for n, _ in sim.texts()} == {SON, GUARD, GRID}
            assert rig.engine.active()[0].acknowledged_by == "call:wang-son"
            faults = [b for _, _, _, b in rig.outbox.records("event.") if b.get("code") == "call_failed"]
            assert len(faults) == 1
        finally:
            await rig.engine.stop()
            rig.outbox.close()
