"""Modbus TCP against the simulator on 127.0.0.1, and the installer probes over a pty."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import msgspec
import structlog

from drivers.base import DriverContext
from drivers.modbus import probe
from drivers.modbus.spec import SPEC_TCP
from drivers.modbus.config import TcpPort
from drivers.modbus.simbank import SlaveSim, load_profile
from drivers.modbus.simulator import ModbusSimulator
from gateway.clock import Clock
from gateway.model import Device, DeviceType, EventKind, Reading
from tests.support.wait import async_wait_for

HYDRANT = Path(__file__).resolve().parents[2] / "config" / "profiles" / "hydrant_monitor.toml"


async def test_tcp_polls_discards_late_replies_and_reconnects():
    kind, prof = load_profile(HYDRANT)
    sim = ModbusSimulator([SlaveSim(u, kind, prof) for u in (1, 2)])
    port = await sim.start_tcp("127.0.0.1", 0)
    cfg = msgspec.convert({"host": "127.0.0.1", "port": port, "poll_period_s": 0.2, "timeout_s": 0.3,
                           "offline_after": 2, "backoff_cap_s": 0.4}, TcpPort)
    devices = (Device("h1", "h", DeviceType.HYDRANT, "tcp", 1), Device("h2", "h", DeviceType.HYDRANT, "tcp", 2),
               Device("h3", "h", DeviceType.HYDRANT, "tcp", 3))  # unit 3 does not exist: silent
    driver = SPEC_TCP.build(DriverContext("tcp", cfg, devices, {"h": prof}, Clock("assume_synced"), structlog.get_logger()))
    items: list = []
    task = asyncio.create_task(driver.run(items.append))

    def readings(dev):
        return [i for i in items if isinstance(i, Reading) and i.device_id == dev]

    try:
        sim.set_value(1, "battery_pct", 11)
        sim.set_value(2, "battery_pct", 22)
        await async_wait_for(lambda: len(readings("h1")) >= 3 and len(readings("h2")) >= 3)
        await async_wait_for(lambda: any(i.kind == EventKind.OFFLINE and i.device_id == "h3" for i in items if not isinstance(i, Reading)))
        assert driver.health().counters["port_opens"] == 1  # a silent unit never drops the connection
        sim.set_fault(1, late_ms=450)
        await async_wait_for(lambda: driver.health().detail["slaves"]["h1"]["timeouts"] >= 2)
        await async_wait_for(lambda: driver.health().counters["late_discarded"] >= 1, what="late reply discarded by tid")
        assert {r.values["battery_pct"] for r in readings("h2")} == {22}
        sim.clear_faults()
        # the endpoint restarts on the same port: the driver reconnects
        await sim.stop()
        await async_wait_for(lambda: not driver.link.is_open, what="connection lost")
        n = len(readings("h2"))
        sim2 = ModbusSimulator([SlaveSim(u, kind, prof) for u in (1, 2)])
        await sim2.start_tcp("127.0.0.1", port)
        try:
            await async_wait_for(lambda: len(readings("h2")) > n, timeout_s=15, what="polls after reconnect")
            assert driver.health().counters["port_opens"] >= 2
        finally:
            await sim2.stop()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sim.stop()


async def test_probe_scan_read_write_over_a_pty(tmp_path):
    kind, prof = load_profile(Path(HYDRANT).with_name("guard_relay_box.toml"))
    sim = ModbusSimulator([SlaveSim(u, kind, prof) for u in (3, 7)])
    path = str(tmp_path / "ttyMB")
    await sim.start_rtu(path, create_pty=True)
    try:
        seen = []
        found = await probe.scan(path, 9600, range(1, 10), 0.1, progress=lambda u, ok: seen.append(u))
        assert found == [3, 7] and seen == list(range(1, 10))
        await probe.write(path, 9600, 7, 5, 1, [1])
        assert sim.output(7, "strobe") is True
        assert await probe.read(path, 9600, 7, 1, 0, 2) == [False, True]
    finally:
        await sim.stop()
