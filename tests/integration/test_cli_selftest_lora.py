"""selftest's LoRa line: the module's registers are read over a real pty (emulated mode pins) and a
mismatch FAILs with the difference; a keyed sensor without its key FAILs with the fix."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import msgspec

from drivers.lora import e22
from drivers.lora.config import LoraPort
from drivers.lora.simulator import LoraSimulator, emulated_pins
from gateway.cli.checks import Env, check_lora_modules

PINS = dict(m0_gpio=5, m1_gpio=6, aux_gpio=13)


def _env(path: str, tmp_path, **extra) -> Env:
    port = msgspec.convert({"path": path, "gpio_root": str(tmp_path / "gpio"), **PINS}, LoraPort)
    return Env(config_path="gateway.toml", cfg=SimpleNamespace(ports={"radio": ("lora_e22", port)}), **extra)


async def _sim(tmp_path, link, wrong_channel: bool) -> LoraSimulator:
    sim = LoraSimulator(e22.E22Registers(address=0xFFFF, rssi_byte=True, fixed_point=True),
                        emulated_pins(tmp_path / "gpio", 5, 6, 13), time_scale=1000)
    if wrong_channel:
        sim.set_fault("wrong_channel")
    await sim.start(link.b)
    return sim


async def test_matching_module_passes_and_wrong_channel_fails_with_the_difference(pty_link, tmp_path):
    link = pty_link()
    sim = await _sim(tmp_path, link, wrong_channel=False)
    try:
        [ok] = await asyncio.to_thread(check_lora_modules, _env(link.a, tmp_path))
        assert ok.ok and ok.reason == "registers verified"
        sim.set_fault("wrong_channel")
        [bad] = await asyncio.to_thread(check_lora_modules, _env(link.a, tmp_path))
        assert not bad.ok and "channel: module 30 (440.125 MHz), config 23 (433.125 MHz)" in bad.reason
    finally:
        await sim.stop()


def test_a_keyed_sensor_without_its_key_fails_with_the_fix_when_the_daemon_runs(tmp_path):
    env = _env("/dev/ttyAMA1", tmp_path, ports=[{"port": "radio"}], status={"drivers": {"radio": {"detail": {
        "module": "skipped", "misconfigured": {"smoke-2-1-401": "profile lora_smoke_v1 is keyed but the credentials file has no lora_keys.smoke-2-1-401"}}}}})
    module, device = check_lora_modules(env)
    assert module.ok and "M0/M1 not wired" in module.reason
    assert not device.ok and device.name == "device smoke-2-1-401"
    assert "add lora_keys.smoke-2-1-401" in device.fix
