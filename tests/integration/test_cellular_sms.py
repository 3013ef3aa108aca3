"""SMS through the EC200-class simulator over a real pty: exact PDU bytes, concatenation, order, rate limits,
and clear failures (module absent, not registered, +CMS ERROR, reboot)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import structlog

from drivers.base import DriverContext, DriverState
from drivers.cellular.spec import SPEC_SMS
from drivers.cellular.config import SmsPort
from drivers.cellular.simsms import SmsModemSim
from gateway.clock import Clock
from gateway.errors import CommandRejected, ModemError, ModemUnavailable
from tests.support.wait import async_wait_for


@contextlib.asynccontextmanager
async def sms_rig(tmp_path, start_sim: bool = True, **port_kw):
    path = str(tmp_path / "ec200")
    sim = SmsModemSim()
    if start_sim:
        await sim.start(path)
    kw = dict(path=path, query_timeout_s=2.0, per_recipient_min_interval_s=0.0, reopen_cap_s=0.5)
    kw.update(port_kw)
    ctx = DriverContext("sms", SmsPort(**kw), (), {}, Clock("assume_synced"), structlog.get_logger("test"))
    driver = SPEC_SMS.build(ctx)
    task = asyncio.create_task(driver.run(lambda item: None))
    try:
        if start_sim:
            await async_wait_for(lambda: driver.health().state == DriverState.OK, 15, what="sms modem up")
        yield driver, sim
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


async def test_fire_alarm_sms_bytes_are_exact(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        await driver.send_sms("+8613800138000", "火警")
        (rec,) = sim.sms
        assert (rec.command, rec.pdu_hex) == ("AT+CMGS=19", "0011000D91683108108300F00008AA04706B8B66")
        assert (rec.number, rec.text) == ("+8613800138000", "火警")


async def test_a_probe_beside_the_running_sms_driver_is_refused_and_takes_nothing(tmp_path):
    """Exclusive open (the flock every opener of ours takes): a `gateway modem at` beside the daemon
    fails at once instead of swallowing half of the modem's answers to the alarm SMS."""
    from drivers.cellular import probe

    async with sms_rig(tmp_path) as (driver, sim):
        with pytest.raises(ModemUnavailable, match="exclusively lock"):
            await probe.at(str(tmp_path / "ec200"), "AT+CSQ", timeout_s=2)
        await driver.send_sms("+8613800138000", "火警")
        assert [rec.text for rec in sim.sms] == ["火警"]


async def test_long_message_is_sent_in_parts_recipients_in_order(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        text = "【社区消防】" + "2栋1单元401 烟感报警，请立即处置。" * 6
        numbers = ["+8613800000001", "+8613800000002", "+8613800000003"]
        await asyncio.gather(*(driver.send_sms(n, text) for n in numbers))
        assert sim.texts() == [(n, text) for n in numbers]
        assert all(r.concat is not None and r.concat[1] == 2 for r in sim.sms)


async def test_not_registered_is_modem_unavailable_at_once(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        sim.set_network("none")
        await async_wait_for(lambda: driver.health().detail["unavailable"], 10, what="unavailable")
        with pytest.raises(ModemUnavailable, match="not registered"):
            await driver.send_sms("+8613800138000", "火警")
        assert sim.sms == []


async def test_absent_module_is_modem_unavailable(tmp_path):
    async with sms_rig(tmp_path, start_sim=False) as (driver, _):
        await async_wait_for(lambda: driver.health().state == DriverState.DOWN, 10, what="down")
        with pytest.raises(ModemUnavailable, match="cannot open"):
            await driver.send_sms("+8613800138000", "火警")


async def test_cms_error_is_a_modem_error_with_meaning_and_the_queue_goes_on(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        sim.cms_error_next = 332
        with pytest.raises(ModemError, match="network timeout"):
            await driver.send_sms("+8613800138000", "火警")
        await driver.send_sms("+8613800138000", "火警")
        assert len(sim.sms) == 1


async def test_per_recipient_rate_limit(tmp_path):
    async with sms_rig(tmp_path, per_recipient_min_interval_s=60.0) as (driver, sim):
        await driver.send_sms("+8613800138000", "火警")
        with pytest.raises(CommandRejected) as e:
            await driver.send_sms("+8613800138000", "火警")
        assert e.value.reason == "rate_limited"
        await driver.send_sms("+8613900139000", "火警")  # another recipient is not held up


async def test_module_reboot_reinitialises_and_sends_again(tmp_path):
    async with sms_rig(tmp_path) as (driver, sim):
        sim.reboot()
        await async_wait_for(lambda: driver.health().counters.get("reboots"), 10, what="reboot seen")
        await async_wait_for(lambda: driver.health().state == DriverState.OK and not driver.health().detail["unavailable"],
                             15, what="back up")
        await driver.send_sms("+8613800138000", "火警")
        assert sim.sms[-1].text == "火警" and sim.commands.count("AT+CMGF=0") >= 2
