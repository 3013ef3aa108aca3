"""Module verification at start over a real pty with emulated mode pins (sysfs-like files the
simulator reads): a matching module runs, a mismatched one is refused with a clear message."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from drivers.base import DriverState
from drivers.lora import e22
from drivers.lora.config import LoraPort
from drivers.lora.pins import Mode
from drivers.lora.simulator import LoraSimulator, emulated_pins
from gateway.errors import DeviceTimeout
from tests.integration.lora_rig import SMOKE_ID, build_driver, codecs  # noqa: F401 (fixture)
from tests.support.wait import async_wait_for

pytestmark = pytest.mark.usefixtures("codecs")
PINS = dict(m0_gpio=5, m1_gpio=6, aux_gpio=13)


def wired_sim(tmp_path, **regs) -> LoraSimulator:
    pins = emulated_pins(tmp_path / "gpio", 5, 6, 13)
    return LoraSimulator(e22.E22Registers(address=0xFFFF, rssi_byte=True, fixed_point=True, **regs), pins, time_scale=1000)


def port(path: str, tmp_path, **kw) -> LoraPort:
    return msgspec.convert({"path": path, "gpio_root": str(tmp_path / "gpio"), **PINS, **kw}, LoraPort)


async def test_verify_reads_registers_in_config_mode_and_returns_to_normal(pty_link, tmp_path):
    link = pty_link()
    sim = wired_sim(tmp_path)
    await sim.start(link.b)
    try:
        regs = await e22.verify(port(link.a, tmp_path))
        assert regs.channel == 23 and regs.fixed_point and regs.rssi_byte
        assert sim.config_answers == [bytes.fromhex("c1 00 09 ff ff 00 62 00 17 c3 00 00")]
        assert sim.pins.read_mode() is Mode.NORMAL
    finally:
        await sim.stop()


async def test_driver_refuses_to_run_on_wrong_channel(pty_link, tmp_path):
    link = pty_link()
    sim = wired_sim(tmp_path)
    sim.set_fault("wrong_channel")
    await sim.start(link.b)
    driver = build_driver(link.a, gpio_root=str(tmp_path / "gpio"), **PINS)
    try:
        with pytest.raises(e22.ModuleMismatch) as exc:
            await asyncio.wait_for(driver.run(lambda item: None), 10)
        assert "channel: module 30 (440.125 MHz), config 23 (433.125 MHz)" in str(exc.value)
        h = driver.health()
        assert h.state is DriverState.DOWN and h.detail["module"].startswith("mismatch: channel")
    finally:
        await sim.stop()


async def test_verified_driver_receives_frames(pty_link, tmp_path):
    link = pty_link()
    sim = wired_sim(tmp_path)
    from tests.integration.lora_rig import standard_devices

    for s in standard_devices()[3]:
        sim.add_sensor(s, heartbeats=False)
    await sim.start(link.b)
    driver = build_driver(link.a, gpio_root=str(tmp_path / "gpio"), **PINS)
    items: list = []
    task = asyncio.create_task(driver.run(items.append))
    try:
        await async_wait_for(lambda: driver.health().state is not DriverState.DOWN, what="verified and open")
        assert driver.health().detail["module"] == "verified"
        sim.trigger(SMOKE_ID, "alarm")
        await async_wait_for(lambda: any(getattr(i, "code", "") == "smoke" for i in items), what="alarm")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


async def test_silent_module_times_out_with_device_timeout(pty_link, tmp_path):
    link = pty_link()
    emulated_pins(tmp_path / "gpio", 5, 6, 13)  # pins exist, nobody answers on the UART
    with pytest.raises(DeviceTimeout, match="no answer to C1 00 09"):
        await e22.verify(port(link.a, tmp_path), answer_timeout_s=0.3)


def unwired_sim(edition: str, **regs) -> LoraSimulator:
    return LoraSimulator(e22.E22Registers(address=0xFFFF, rssi_byte=True, fixed_point=True, **regs), time_scale=1000, edition=edition)


async def test_verify_without_pins_by_software_mode_switching_2024_edition(pty_link):
    link = pty_link()
    sim = unwired_sim("2024", software_mode_switch=True)
    await sim.start(link.b)
    try:
        cfg = msgspec.convert({"path": link.a, "software_mode_switch": True}, LoraPort)
        regs = await e22.verify(cfg)
        assert regs.software_mode_switch and regs.channel == 23
        assert sim.config_answers == [bytes.fromhex("c1 00 09 ff ff 00 62 10 17 c3 00 00")]
        assert sim.soft_mode is Mode.NORMAL and not sim.downlinks  # back in normal mode, nothing transmitted
    finally:
        await sim.stop()


async def test_2018_edition_has_no_software_mode_switching_so_verify_times_out(pty_link):
    link = pty_link()
    sim = unwired_sim("2018", software_mode_switch=True)  # b4 is a reserved bit on this firmware
    await sim.start(link.b)
    try:
        cfg = msgspec.convert({"path": link.a, "software_mode_switch": True}, LoraPort)
        with pytest.raises(DeviceTimeout, match="C0 C1 C2 C3 02 02"):
            await e22.verify(cfg, answer_timeout_s=0.3)
        assert sim.soft_mode is None and not sim.config_answers
    finally:
        await sim.stop()


async def test_2018_edition_slow_air_rate_verifies_only_when_the_edition_is_pinned(pty_link, tmp_path):
    link = pty_link()
    pins = emulated_pins(tmp_path / "gpio", 5, 6, 13)
    sim = LoraSimulator(e22.E22Registers(address=0xFFFF, rssi_byte=True, fixed_point=True, air_rate_code=1), pins,
                        time_scale=1000, edition="2018")
    await sim.start(link.b)
    try:
        regs = await e22.verify(port(link.a, tmp_path, e22_edition="2018", air_rate_bps=1200))
        assert regs.air_rate_in("2018") == 1200
        with pytest.raises(e22.ModuleMismatch, match="e22_edition"):
            await e22.verify(port(link.a, tmp_path, air_rate_bps=2400))  # "auto": code 001 is ambiguous
    finally:
        await sim.stop()


@pytest.mark.parametrize(("sim_edition", "driver_edition", "expected_dbm"), [("2018", "2018", -97), ("2024", "2024", -97), ("2024", "auto", -97)])
async def test_rssi_byte_is_read_with_the_editions_formula(pty_link, sim_edition, driver_edition, expected_dbm):
    from tests.integration.lora_rig import rig

    async with rig(pty_link(), sim=LoraSimulator(time_scale=1000, seed=3, edition=sim_edition), e22_edition=driver_edition) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        r.sim.trigger(SMOKE_ID, "alarm")
        await async_wait_for(lambda: r.radio("smoke-2-1-401")["frames"] == 1, what="frame")
        assert r.radio("smoke-2-1-401")["last_rssi_dbm"] == expected_dbm
