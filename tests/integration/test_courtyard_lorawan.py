"""The simulated courtyard with its LoRaWAN detectors and the real daemon: a Milesight smoke alarm heard
through the packet forwarder drives the guard-room sounder and is texted, exactly like an E22 detector's
(the rules do not care which radio heard it); a leak sensor's alarm is raised by its rule."""

import asyncio

import pytest

from gateway.control.client import call
from tests.reliability.serial_rig import daemon_on_courtyard
from tests.support.wait import async_wait_for


@pytest.mark.slow
async def test_lorawan_smoke_alarm_sounds_and_texts_like_any_other(tmp_path, broker):
    async with daemon_on_courtyard(tmp_path, broker.url) as rig:
        cy = rig.cy
        sim_rtu, sim = cy.sims["modbus_rtu"], cy.sims["lorawan"]
        # The forwarder's keepalive reached the driver: its PULL_ACK came back.
        await async_wait_for(lambda: sim.acks_received["pull"] > 0, 30, what="the gateway's lorawan port")
        await cy.trigger("smoke", "lwsmoke-3-1-201")
        # Functional waits, generous for a loaded CI box (the latency is benchmarked, not asserted here).
        await async_wait_for(lambda: sim_rtu.output(10, "sounder"), 30, what="sounder on")
        await async_wait_for(lambda: any("3栋1单元201室" in text and "烟感报警" in text for _, text in cy.sims["sms"].texts()), 30, what="SMS")
        # The alarm was sent confirmed: the network server's ACK came back in RX1.
        await async_wait_for(lambda: sim.devices["lwsmoke-3-1-201"].acks >= 1, 30, what="ACK downlink")
        await cy.trigger("leak", "lwleak-pumproom")
        alarms: list = []

        async def leak_raised() -> bool:
            alarms[:] = (await asyncio.to_thread(call, rig.socket, "alarms", {}, 5.0)).result
            return any(a["device_id"] == "lwleak-pumproom" and a["rule"] == "water-leak" for a in alarms)

        for _ in range(100):  # bounded: 100 x 0.2 s
            if await leak_raised():
                break
            await asyncio.sleep(0.2)
        assert any(a["device_id"] == "lwleak-pumproom" for a in alarms), alarms
