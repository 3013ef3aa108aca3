"""Voice calls through the real SMS driver against the EC200 simulator over a pty (issue 22): answered and
acknowledged with key 1, no answer, busy, declined, a module reboot mid-call, and SMS queued during a call."""

from __future__ import annotations

import asyncio

import pytest

from drivers.base import Caller
from drivers.cellular.simcall import Callee
from drivers.cellular.voice import ucs2_hex
from gateway.errors import ModemUnavailable
from tests.integration.test_cellular_sms import sms_rig
from tests.support.wait import async_wait_for

SON = "+8613800000005"
TEXT = "新鸿社区3号院2栋1单元401，独居老人长时间无活动。确认请按1。"


async def test_answered_and_key_1_acknowledges(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        assert isinstance(driver, Caller)
        sim.voice.callees[SON] = Callee(answer_after_rings=2, key="1")
        outcome = await driver.call(SON, TEXT, ring_timeout_s=10, key_wait_s=5)
        assert (outcome.result, outcome.key) == ("acknowledged", "1")
        (rec,) = sim.voice.calls
        assert rec.spoken == [TEXT] and rec.outcome == "ended_by_gateway"  # we hung up after the key
        assert "AT+QTONEDET=1" in sim.commands and f'AT+QTTS=1,"{ucs2_hex(TEXT)}"' in sim.commands
        assert f"ATD{SON};" in sim.commands


async def test_answered_without_key_is_answered_not_acknowledged(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        sim.voice.callees[SON] = Callee(answer_after_rings=1, key="5")
        outcome = await driver.call(SON, TEXT, ring_timeout_s=10, key_wait_s=0.5)
        assert (outcome.result, outcome.key) == ("answered", "")


async def test_no_answer_hangs_up_after_the_ring_timeout(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        sim.voice.callees[SON] = Callee(answer_after_rings=None)
        outcome = await driver.call(SON, TEXT, ring_timeout_s=1.0, key_wait_s=1)
        assert outcome.result == "no_answer" and outcome.ring_s >= 1.0
        assert sim.voice.calls[0].outcome == "ended_by_gateway" and sim.voice.current is None


@pytest.mark.parametrize("callee,result", [(Callee(busy=True), "busy"), (Callee(decline=True), "rejected")], ids=["busy", "declined"])
async def test_busy_and_declined(tmp_path, callee, result):
    async with sms_rig(tmp_path) as (driver, sim):
        sim.voice.callees[SON] = callee
        outcome = await driver.call(SON, TEXT, ring_timeout_s=5, key_wait_s=1)
        assert outcome.result == result and sim.voice.calls[0].spoken == []


async def test_sms_due_during_a_call_waits_and_goes_after_it(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        sim.voice.callees[SON] = Callee(answer_after_rings=4, key="1")
        call = asyncio.create_task(driver.call(SON, TEXT, ring_timeout_s=10, key_wait_s=5))
        await async_wait_for(lambda: sim.voice.current is not None, 10, what="call in progress")
        await driver.send_sms("+8613800000001", "【社区消防】烟感报警")
        assert (await call).result == "acknowledged"
        atd = sim.commands.index(f"ATD{SON};")
        cmgs = next(i for i, c in enumerate(sim.commands) if c.startswith("AT+CMGS"))
        assert cmgs > sim.commands.index("ATH") > atd  # never two things at once on the module
        assert sim.texts() == [("+8613800000001", "【社区消防】烟感报警")]


async def test_module_reboot_mid_call_fails_the_call_and_sms_still_goes(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        sim.voice.callees[SON] = Callee(answer_after_rings=1, reboot_on_answer=True)
        with pytest.raises(ModemUnavailable):
            await driver.call(SON, TEXT, ring_timeout_s=10, key_wait_s=5)
        await async_wait_for(lambda: not driver.health().detail["unavailable"], 15, what="modem back")
        await driver.send_sms("+8613800000001", "【社区消防】烟感报警")
        assert sim.texts() == [("+8613800000001", "【社区消防】烟感报警")]
        assert driver.health().counters["reboots"] >= 1
