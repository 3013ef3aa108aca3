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
