"""The live NB-IoT driver under random line noise, a silent modem (timeouts) and an unplugged port;
the installer probes against the simulator."""

from __future__ import annotations

import asyncio
import random

from drivers.base import DriverState
from drivers.cellular import probe
from drivers.cellular.simnbiot import NbiotModemSim
from gateway.model import EventKind
from tests.integration.cellular_support import nbiot_rig
from tests.support.wait import async_wait_for

PIECES = [b"OK", b"ERROR", b"+CME ERROR:159", b"+NSONMI:0,20", b"+NSONMI:9,x", b"0", b"+CEREG:1", b"+CSQ:17,99",
          b"\x00\x00", "火警".encode(), b"\xff\xfe", b"+CSCON:1", b"0,1.2.3.4,5,2,ABCD,0", b"+NSOSTR:0,1,1", b"7" * 3000]


async def test_two_thousand_random_lines_through_the_live_driver(tmp_path):
    rng = random.Random(66)
    async with nbiot_rig(tmp_path, query_timeout_s=1.0) as rig:
        s = list(rig.sim.sensors.values())[0]
        for i in range(2000):
            rig.sim.write_raw(b"\r\n" + rng.choice(PIECES) + rng.choice([b"\r\n", b"\r\r\n", b"\r"]))
            if i % 200 == 0:
                s.trigger("heartbeat")
                await asyncio.sleep(0)
        assert not rig.task.done()
        # Noise over, the driver is in step: a fresh alarm is decoded and acked.
        await async_wait_for(lambda: rig.driver.health().state == DriverState.OK, 30, what="ok after noise")
        seq = s.trigger("alarm")
        await async_wait_for(lambda: seq in s.acked and rig.events(EventKind.ALARM), 30, what="alarm after noise")
        assert rig.counter("at_unexpected_lines") + rig.counter("at_garbage_lines") > 0


async def test_silent_modem_times_out_goes_down_and_comes_back(tmp_path):
    async with nbiot_rig(tmp_path, query_timeout_s=0.3, status_interval_s=5.0, reopen_cap_s=0.5) as rig:
        rig.sim.faults.silent = True
        s = list(rig.sim.sensors.values())[0]
        s.trigger("heartbeat")  # NSORF goes unanswered
        await async_wait_for(lambda: rig.driver.health().state == DriverState.DOWN, 15, what="down on timeout")
        assert rig.counter("at_timeouts") >= 1
        rig.sim.faults.silent = False
        await async_wait_for(lambda: rig.driver.health().state == DriverState.OK, 20, what="back")


async def test_unplugged_modem_goes_down_and_returns(tmp_path, pty_link):
    from drivers.cellular.spec import SPEC_NBIOT
    from tests.integration.cellular_support import nbiot_context, smoke_devices

    link = pty_link("nb")
    sim = NbiotModemSim()
    sim.register_delay_s = 0.05
    await sim.start(link.b, create_pty=False)
    driver = SPEC_NBIOT.build(nbiot_context(link.a, smoke_devices(1), reopen_cap_s=0.5))
    task = asyncio.create_task(driver.run(lambda item: None))
    try:
        await async_wait_for(lambda: driver.health().state == DriverState.OK, 15, what="up")
        await sim.stop()
        link.unplug()
        await async_wait_for(lambda: driver.health().state == DriverState.DOWN, 15, what="down after unplug")
        link.plug()
        sim = NbiotModemSim()
        sim.register_delay_s = 0.05
        await sim.start(link.b, create_pty=False)
        await async_wait_for(lambda: driver.health().state == DriverState.OK, 20, what="up after replug")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


async def test_probe_at_and_info(tmp_path):
    sim = NbiotModemSim()
    path = str(tmp_path / "probe")
    await sim.start(path)
    try:
        assert await probe.at(path, "AT+CSQ", timeout_s=2) == ["+CSQ:99,99", "OK"]
        assert (await probe.at(path, "AT+BOGUS", timeout_s=2))[0].startswith("error: AT+BOGUS: ERROR")
        facts = await probe.info(path)
        assert facts["sim"] == "ready" and facts["imei"] == sim.imei and facts["registration"] == "not_searching"
    finally:
        await sim.stop()
