"""The care devices over the real LoRa path (issue 22): simulated Milesight WS101 SOS / WS301 door / EM300-DI
water sensors over a pty to the real LoRa driver, keyed frames, decoded by the Milesight codecs; and the
demo courtyard's care block (resident, welfare rule, callee) loads as a valid gateway config."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from drivers.lora.config import LoraProfile
from drivers.lora.simsensors import SimSensor
from drivers.lora.simulator import LoraSimulator
from gateway.model import Device, DeviceType, EventKind, Location
from tests.integration.lora_rig import KEY_HEX, build_driver
from tests.support.wait import async_wait_for

ROOT = Path(__file__).resolve().parents[2]
SOS_ID, DOOR_ID, WATER_ID = 0x00505300, 0x00D0D0D0, 0x00A7E400
DEVICES = [Device("sos-1-1-202", "sos", DeviceType.SOS_BUTTON, "lora", SOS_ID, Location("1", "1", "202")),
           Device("door-1-1-202", "door", DeviceType.DOOR_CONTACT, "lora", DOOR_ID, Location("1", "1", "202")),
           Device("water-1-1-202", "water", DeviceType.WATER_METER, "lora", WATER_ID, Location("1", "1", "202"))]
PROFILES = {"sos": LoraProfile(codec="milesight_ws101"), "door": LoraProfile(codec="milesight_ws301"),
            "water": LoraProfile(codec="milesight_em300di")}


async def test_sos_door_and_water_frames_decode_through_the_real_driver(pty_link):
    link = pty_link()
    sim = LoraSimulator(time_scale=1000, seed=7)
    key = bytes.fromhex(KEY_HEX)
    for addr, kind in ((SOS_ID, "sos_button"), (DOOR_ID, "door_contact"), (WATER_ID, "water_meter")):
        sim.add_sensor(SimSensor(addr, kind, key), heartbeats=False)
    await sim.start(link.b)
    driver = build_driver(link.a, devices=DEVICES, profiles=PROFILES, secrets={d.id: KEY_HEX for d in DEVICES})
    items: list = []
    task = asyncio.create_task(driver.run(items.append))
    try:
        await async_wait_for(lambda: driver.health().state.value == "ok", 15, what="lora driver up")
        sim.trigger(SOS_ID, "press")
        sim.trigger(DOOR_ID, "door_opened")
        sim.trigger(WATER_ID, "water_used")
        sim.trigger(SOS_ID, "cancel")

        def got(device, kind):
            return [i for i in items if i.device_id == device and getattr(i, "kind", None) == kind]

        await async_wait_for(lambda: got("sos-1-1-202", EventKind.ALARM_CLEARED), 15, what="SOS cancel decoded")
        (press,) = got("sos-1-1-202", EventKind.ALARM)
        assert press.code == "sos" and press.detail["press"] == "short"
        door = [i for i in items if i.device_id == "door-1-1-202" and hasattr(i, "values")]
        water = [i for i in items if i.device_id == "water-1-1-202" and hasattr(i, "values")]
        # (the simulator's start sends each sensor's first heartbeat: door shut, 0 pulses)
        assert any(d.values.get("door_open") is True for d in door)
        assert max(w.values["pulses"] for w in water) == 20
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await sim.stop()


async def test_the_demo_courtyards_care_block_is_a_valid_gateway_config(tmp_path):
    from gateway.config import load_config
    from gateway.simulate.courtyard import Courtyard, load

    text = (ROOT / "config/demo/courtyard.toml").read_text().replace('profiles_dir = "../profiles"', f'profiles_dir = "{ROOT / "config/profiles"}"')
    spec_path = tmp_path / "courtyard.toml"
    spec_path.write_text(text)
    cy = Courtyard(load(spec_path), spec_path, tmp_path / "gateway.toml", "mqtt://127.0.0.1:1")
    try:
        await cy.start()
        assert cy.sims["sms"].voice.callees["+8613900000001"].key == "1"
        cfg = load_config(tmp_path / "gateway.toml")
    finally:
        await cy.stop()
    welfare = next(r for r in cfg.rules if r.id == "welfare")
    assert "call" in welfare.actions and cfg.extra["notify"].tiers[0].actions == ("sms", "call")
    assert {d.id for d in cfg.devices} >= {"door-1-1-202", "water-1-1-202"}
