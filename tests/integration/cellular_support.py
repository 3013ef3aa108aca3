"""Shared set-up for the cellular integration tests: a driver context for NB-IoT smoke detectors and an
NbiotModemSim on a real pty (os.openpty, symlinked where the driver opens it)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from drivers.base import DriverContext
from drivers.cellular.config import NbiotPort, NbiotProfile
from drivers.cellular.simnbiot import make_imei
from gateway.clock import Clock
from gateway.model import Device, DeviceType

PROFILE = "nbiot_smoke_udp"


def smoke_devices(n: int, port: str = "nbiot") -> tuple[Device, ...]:
    return tuple(Device(f"smoke-{i}", PROFILE, DeviceType.SMOKE, port, make_imei(i), heartbeat_s=86400) for i in range(1, n + 1))


def nbiot_context(path: str, devices: tuple[Device, ...], state_dir=None, **port_kw) -> DriverContext:
    kw = dict(path=path, query_timeout_s=2.0, slow_timeout_s=5.0, attach_timeout_s=20.0, status_interval_s=30.0)
    kw.update(port_kw)
    return DriverContext(
        port_name="nbiot",
        port=NbiotPort(**kw),
        devices=devices,
        profiles={PROFILE: NbiotProfile(codec="nbiot_smoke_v1")},
        clock=Clock("assume_synced"),
        log=structlog.get_logger("test").bind(driver="nbiot_bc95", port="nbiot"),
        state_dir=state_dir,
    )


class NbiotRig:
    """A running NbiotDriver on one end of a pty and an NbiotModemSim with smoke sensors on the other."""

    def __init__(self, driver, sim, task, items: list) -> None:
        self.driver, self.sim, self.task, self.items = driver, sim, task, items

    def events(self, kind=None) -> list:
        from gateway.model import Event

        return [i for i in self.items if isinstance(i, Event) and (kind is None or i.kind == kind)]

    def counter(self, name: str) -> int:
        return self.driver.health().counters.get(name, 0)


@contextlib.asynccontextmanager
async def nbiot_rig(tmp_path, n_sensors: int = 2, sim_kw: dict | None = None, state_dir=None, **port_kw):
    from drivers.cellular.spec import SPEC_NBIOT
    from drivers.cellular.simnbiot import NbiotModemSim, SmokeSensorSim
    from tests.support.wait import async_wait_for

    path = str(tmp_path / "nbiot")
    sim = NbiotModemSim(**(sim_kw or {}))
    sim.register_delay_s = 0.1
    devices = smoke_devices(n_sensors)
    for i, d in enumerate(devices, 1):
        sim.add_sensor(SmokeSensorSim(str(d.address), f"10.168.3.{100 + i}", 40000 + i, ack_wait_s=3.0))
    await sim.start(path)
    driver = SPEC_NBIOT.build(nbiot_context(path, devices, state_dir, **port_kw))
    items: list = []
    task = asyncio.create_task(driver.run(items.append))
    rig = NbiotRig(driver, sim, task, items)
    try:
        await async_wait_for(lambda: driver.health().state == "ok", 20, what="modem bring-up")
        yield rig
    finally:
        task.cancel()
        # Bounded: a driver that does not stop within 10 s of its cancellation is a bug worth its own
        # clear failure (once seen as a pytest-timeout under heavy CPU starvation).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await asyncio.wait_for(sim.stop(), 10)
