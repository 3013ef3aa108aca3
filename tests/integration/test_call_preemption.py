"""A fire or gas alarm's SMS never waits behind a lower alarm's phone call (non-negotiable: a fire alarm is
texted locally whatever else is going on). Before, a welfare call held the EC200 for up to ~75 s
(ring timeout + the spoken message + the key wait) and the fire SMS queued behind it. Now an urgent SMS
goes before every non-urgent job waiting and hangs up a preemptible call; an SOS call (critical itself)
is not cut. Real SmsDriver over a pty against the EC200 simulator with scripted callees."""

from __future__ import annotations

import asyncio

from drivers.cellular.simcall import Callee
from tests.integration.test_cellular_sms import sms_rig
from tests.support.wait import async_wait_for

RELATIVE, GUARD, GRID = "+8613800000005", "+8613800000001", "+8613800000002"
RING_S = 60.0  # a call left to ring out would outlast every wait below: only a hang-up ends it in time


async def _ringing(sim, driver, preemptible: bool, ring_timeout_s: float = RING_S) -> asyncio.Task:
    sim.voice.callees[RELATIVE] = Callee(answer_after_rings=None)  # the phone rings on
    call = asyncio.create_task(driver.call(RELATIVE, "独居老人长时间无活动", ring_timeout_s, 5.0, preemptible=preemptible))
    await async_wait_for(lambda: sim.voice.calls and sim.voice.calls[0].outcome == "alerting", 15, what="the phone ringing")
    return call


async def test_an_urgent_sms_hangs_up_a_preemptible_call_and_goes_at_once(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        call = await _ringing(sim, driver, preemptible=True)
        await asyncio.wait_for(driver.send_sms(GUARD, "火警 2栋1单元401", urgent=True), 20)
        assert [(n, t) for n, t in sim.texts()] == [(GUARD, "火警 2栋1单元401")]
        outcome = await asyncio.wait_for(call, 10)
        assert outcome.result == "preempted"  # the caller owes this contact the call again
        assert sim.voice.calls[0].outcome == "ended_by_gateway"  # ATH, not a ring-out
        assert driver.counters["calls_preempted"] == 1


async def test_an_sos_call_is_not_cut_and_a_plain_sms_never_cuts_a_call(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        # Not preemptible (an SOS alarm's call): the urgent SMS waits for the call to end by itself.
        call = await _ringing(sim, driver, preemptible=False, ring_timeout_s=2.0)
        sms = asyncio.create_task(driver.send_sms(GUARD, "火警", urgent=True))
        assert (await asyncio.wait_for(call, 20)).result == "no_answer"
        await asyncio.wait_for(sms, 20)
        # Preemptible, but the SMS is not urgent (e.g. a fault notice): it waits too.
        sim.voice.calls.clear()
        call = await _ringing(sim, driver, preemptible=True, ring_timeout_s=2.0)
        await asyncio.wait_for(driver.send_sms(GRID, "设备故障"), 20)
        assert (await asyncio.wait_for(call, 20)).result == "no_answer"
        assert driver.counters["calls_preempted"] == 0
        assert [n for n, _ in sim.texts()] == [GUARD, GRID]


async def test_an_urgent_sms_goes_before_the_jobs_already_waiting(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        call = await _ringing(sim, driver, preemptible=False, ring_timeout_s=2.0)  # the module is busy
        plain = asyncio.create_task(driver.send_sms(GRID, "设备故障"))
        await asyncio.sleep(0)  # queued first
        fire = asyncio.create_task(driver.send_sms(GUARD, "火警", urgent=True))
        await asyncio.wait_for(asyncio.gather(call, plain, fire), 30)
        assert [n for n, _ in sim.texts()] == [GUARD, GRID]
