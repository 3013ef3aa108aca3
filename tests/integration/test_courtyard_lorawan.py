"""The simulated courtyard with its LoRaWAN detectors and the real daemon: a Milesight smoke alarm heard
through the packet forwarder drives the guard-room sounder and is texted, exactly like an E22 detector's
(the rules do not care which radio heard it); a leak sensor's alarm reaches the platform."""

import signal
import subprocess
import sys

import pytest

from gateway.simulate.courtyard import Courtyard, load
from gateway.simulate.platform import PlatformView
from tests.integration.test_courtyard_e2e import ROOT, _courtyard_file
from tests.support.wait import async_wait_for


@pytest.mark.slow
async def test_lorawan_smoke_alarm_sounds_and_texts_like_any_other(tmp_path, broker):
    spec_path = _courtyard_file(tmp_path)
    out = tmp_path / "gateway.toml"
    cy = Courtyard(load(spec_path), spec_path, out, broker.url, time_scale=1.0)
    await cy.start()
    view = PlatformView(broker.url, "gw-xinhong-03")
    view.start()
    daemon = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(out)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sim_rtu, sim = cy.sims["modbus_rtu"], cy.sims["lorawan"]
    try:
        # The forwarder's keepalive reached the driver: its PULL_ACK came back.
        await async_wait_for(lambda: sim.acks_received["pull"] > 0, 30, what="the gateway's lorawan port")
        await cy.trigger("smoke", "lwsmoke-3-1-201")
        await async_wait_for(lambda: sim_rtu.output(10, "sounder"), 10, what="sounder on")
        await async_wait_for(lambda: any("3栋1单元201 烟感报警" in text for _, text in cy.sims["sms"].texts()), 20, what="SMS")
        # The alarm was sent confirmed: the network server's ACK came back in RX1.
        await async_wait_for(lambda: sim.devices["lwsmoke-3-1-201"].acks >= 1, 10, what="ACK downlink")
        await cy.trigger("leak", "lwleak-pumproom")
        leak = lambda: [r for r in view.records if r.get("cls") == "alarm" and r.get("device") == "lwleak-pumproom"]
        await async_wait_for(leak, 20, what="leak alarm at the platform")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            rc = daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            rc = -9
        view.stop()
        await cy.stop()
    assert rc == 0, daemon.stderr.read().decode()[-3000:]
