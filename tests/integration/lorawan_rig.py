"""A running LoRaWAN driver and GWMP forwarder simulator over real UDP on 127.0.0.1, for the LoRaWAN tests."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import msgspec
import structlog

from drivers.base import DriverContext
from drivers.lorawan.spec import SPEC_LORAWAN as SPEC
from drivers.lorawan.config import LorawanPort, LorawanProfile
from drivers.lorawan.simdevices import SimDevice
from drivers.lorawan.simulator import LorawanSimulator
from gateway.clock import Clock
from gateway.model import Device, DeviceType, Event, EventKind, Reading
from tests.support.ports import free_port

# ABP smoke detector (the keys of the public lora-packet example), an OTAA gas detector, an ABP leak sensor.
NWK_SKEY = "44024241ed4ce9a68c6a8bc055233fd3"
APP_SKEY = "ec925802ae430ca77fd3dd73cb2cc588"
APP_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
SMOKE_ADDR, GAS_EUI, LEAK_ADDR = "26011bda", "24e124126a148305", "26011c00"


class StatefulContext(DriverContext, frozen=True):
    """DriverContext with the state_dir another change adds to drivers.base (issue 15)."""

    state_dir: str | None = None


def free_udp_port() -> int:
    return free_port(udp=True)


def standard() -> tuple[list[Device], dict, dict]:
    devices = [Device("smoke-2-401", "ms_gs524n", DeviceType.SMOKE, "lw", SMOKE_ADDR),
               Device("gas-3-102", "ms_gs101", DeviceType.GAS, "lw", GAS_EUI),
               Device("leak-riser", "ms_ws303", DeviceType.WATER_LEAK, "lw", LEAK_ADDR)]
    profiles = {"ms_gs524n": LorawanProfile(codec="milesight_gs524n"), "ms_gs101": LorawanProfile(codec="milesight_gs101"),
                "ms_ws303": LorawanProfile(codec="milesight_ws303")}
    secrets = {"smoke-2-401": f"{NWK_SKEY}:{APP_SKEY}", "gas-3-102": APP_KEY, "leak-riser": f"{APP_SKEY}:{NWK_SKEY}"}
    return devices, profiles, secrets


def sim_devices() -> list[SimDevice]:
    return [SimDevice.abp("smoke", int(SMOKE_ADDR, 16), bytes.fromhex(NWK_SKEY), bytes.fromhex(APP_SKEY), "smoke-2-401"),
            SimDevice.otaa("gas", GAS_EUI, bytes.fromhex(APP_KEY), "gas-3-102"),
            SimDevice.abp("leak", int(LEAK_ADDR, 16), bytes.fromhex(APP_SKEY), bytes.fromhex(NWK_SKEY), "leak-riser")]


def build_driver(port: int, state_dir: Path | None, clock=None, **port_kw):
    devices, profiles, secrets = standard()
    cfg = msgspec.convert({"bind_port": port, **port_kw}, LorawanPort)
    ctx = StatefulContext("lw", cfg, tuple(devices), profiles, clock or Clock("assume_synced"), structlog.get_logger(),
                          secrets=secrets, state_dir=str(state_dir) if state_dir else None)
    return SPEC.build(ctx)


class Rig:
    def __init__(self, driver, sim: LorawanSimulator, items: list) -> None:
        self.driver, self.sim, self.items = driver, sim, items

    def events(self, device_id: str, kind: EventKind, code: str | None = None) -> list[Event]:
        return [i for i in self.items if isinstance(i, Event) and i.device_id == device_id and i.kind == kind
                and (code is None or i.code == code)]

    def readings(self, device_id: str) -> list[Reading]:
        return [i for i in self.items if isinstance(i, Reading) and i.device_id == device_id]

    def device(self, device_id: str) -> dict:
        return self.driver.health().detail["devices"][device_id]

    def counter(self, name: str) -> int:
        return self.driver.health().counters.get(name, 0)


@contextlib.asynccontextmanager
async def rig(state_dir: Path | None, port: int | None = None, keepalive_s: float = 0.2, clock=None, items: list | None = None,
              **port_kw):
    """Driver on a free loopback UDP port, simulator forwarder with the standard devices; the forwarder's
    first PULL_DATA has been acknowledged when the body runs (its downlink path is known). `items`: where the
    driver emits (a list of the caller's own kind, e.g. one that stamps arrival times)."""
    port = port or free_udp_port()
    driver = build_driver(port, state_dir, clock, **port_kw)
    items = [] if items is None else items
    task = asyncio.create_task(driver.run(items.append))
    sim = LorawanSimulator(("127.0.0.1", port), keepalive_s=keepalive_s, seed=5)
    for d in sim_devices():
        sim.add(d)
    try:
        from tests.support.wait import async_wait_for

        await async_wait_for(lambda: driver._transport is not None, what="driver bound")
        await sim.start()
        await async_wait_for(lambda: sim.acks_received["pull"] > 0, what="PULL_ACK")
        yield Rig(driver, sim, items)
    finally:
        await sim.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
