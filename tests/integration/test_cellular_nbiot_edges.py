"""NB-IoT driver edges not covered by test_cellular_nbiot.py, each through the real driver and the modem
simulator on a pty: a modem whose remaining length never reaches 0, an ack the module keeps refusing as
busy (the alarm still counts), a network that denies registration at bring-up, and relay mode (no modem)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from drivers.base import DriverContext, DriverState
from drivers.cellular.config import NbiotPort, NbiotProfile
from drivers.cellular.nbiot import MAX_READS_PER_DRAIN, SEND_BUSY_RETRIES
from drivers.cellular.simnbiot import NbiotModemSim, SmokeSensorSim
from drivers.cellular.spec import SPEC_NBIOT
from drivers.codecs import nbiot_smoke
from gateway.clock import Clock
from gateway.model import EventKind
from tests.integration.cellular_support import PROFILE, nbiot_context, nbiot_rig, smoke_devices
from tests.support.wait import async_wait_for


def _sensor(rig, i: int = 0) -> SmokeSensorSim:
    return list(rig.sim.sensors.values())[i]


async def test_a_remaining_length_that_lies_costs_one_more_read_and_never_pins_the_driver(tmp_path):
    async with nbiot_rig(tmp_path) as rig:
        rig.sim.remaining_stuck = True  # every NSORF answer claims 7 more bytes than the module holds
        s = _sensor(rig)
        seq = s.trigger("alarm")
        await async_wait_for(lambda: seq in s.acked, 20, what="alarm acked")
        assert [e.code for e in rig.events(EventKind.ALARM)] == ["smoke"]

        # One read for the datagram, one more that finds nothing (just OK) and ends the drain; the
        # MAX_READS_PER_DRAIN bound is only for a module that keeps producing data lines.
        def nsorf() -> list[str]:
            return [c for c in rig.sim.commands if c.startswith("AT+NSORF")]

        await async_wait_for(lambda: len(nsorf()) >= 2, 10, what="the read after the datagram")
        seq2 = _sensor(rig, 1).trigger("heartbeat")
        await async_wait_for(lambda: seq2 in _sensor(rig, 1).acked, 20, what="the driver serves on")
        assert len(nsorf()) < MAX_READS_PER_DRAIN and rig.counter("drain_capped") == 0


async def test_an_ack_refused_as_busy_beyond_the_retries_is_counted_and_the_alarm_is_not_lost(tmp_path):
    async with nbiot_rig(tmp_path) as rig:
        rig.sim.send_busy = SEND_BUSY_RETRIES + 1  # +CME ERROR:159 for every attempt of this ack
        s = _sensor(rig)
        s.retries = 0
        seq = s.trigger("alarm")
        await async_wait_for(lambda: rig.counter("ack_failed") >= 1, 20, what="ack given up")
        assert seq not in s.acked
        assert [e.code for e in rig.events(EventKind.ALARM)] == ["smoke"]  # decoded and emitted before the ack
        sends = [c for c in rig.sim.commands if c.startswith("AT+NSOST")]
        assert len(sends) == SEND_BUSY_RETRIES + 1


async def test_registration_denied_at_bring_up_is_degraded_then_down_with_the_reason_and_recovers(tmp_path):
    path = str(tmp_path / "nbiot")
    sim = NbiotModemSim()
    sim.register_delay_s = 0.05
    sim.network = "denied"
    await sim.start(path)
    driver = SPEC_NBIOT.build(nbiot_context(path, smoke_devices(1), attach_timeout_s=1.0))
    items: list = []
    task = asyncio.create_task(driver.run(items.append))
    try:
        await async_wait_for(lambda: driver.health().state == DriverState.DEGRADED, 20, what="degraded while denied")
        await async_wait_for(lambda: driver.health().state == DriverState.DOWN, 20, what="down after the attach timeout")
        assert driver.health().detail["registration"] == "denied"
        sim.set_network("ok")
        await async_wait_for(lambda: driver.health().state == DriverState.OK, 30, what="registered once the network allows it")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await asyncio.wait_for(sim.stop(), 10)


async def test_relay_mode_needs_no_modem_and_decodes_relayed_reports(tmp_path):
    devices = smoke_devices(1)
    ctx = DriverContext(port_name="nbiot", port=NbiotPort(mode="relay"), devices=devices,
                        profiles={PROFILE: NbiotProfile(codec="nbiot_smoke_v1")}, clock=Clock("assume_synced"),
                        log=structlog.get_logger("test"))
    driver = SPEC_NBIOT.build(ctx)
    items: list = []
    task = asyncio.create_task(driver.run(items.append))
    try:
        await async_wait_for(lambda: driver.health().state == DriverState.OK, 5, what="relay mode up")
        imei = str(devices[0].address)
        answer = driver.submit_relay({"imei": imei, "payload_hex": nbiot_smoke.encode(imei, nbiot_smoke.ALARM, 9, flags=1).hex()})
        assert answer["device_id"] == devices[0].id and answer["duplicate"] is False
        await async_wait_for(lambda: any(getattr(i, "kind", None) == EventKind.ALARM for i in items), 5, what="relayed alarm")
        assert all(getattr(i, "via", "") == "platform-relay" for i in items)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
