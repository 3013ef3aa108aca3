"""Power supervision against a real upsd + dummy-ups (issue 23): OL -> OB -> OB LB -> OL scripted through the
driver's .dev file; events within the deadline, type 21 bits at the simulated centre, the low-battery
shutdown sequence with an injected power-off, recovery; upsd lost and back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback

import msgspec
import pytest
import structlog

from gateway.clock import Clock
from gateway.power.config import PowerSection
from gateway.power.monitor import PowerMonitor
from gateway.power.records import PowerRecords
from gateway.power.shutdown import LowBatteryShutdown
from gateway.power.state import PowerEvent
from gateway.uplink.gb26875.objects import DeviceBit, TypeFlag
from gateway.uplink.gb26875.simulator import Centre
from tests.integration.gb26875_support import make_client, open_outbox
from tests.support import nut
from tests.support.wait import async_wait_for

DEADLINE_S = 10.0


@contextlib.asynccontextmanager
async def running(coro_fn):
    """Run a stage's `run()` for the block; on exit cancel it and insist it stops within 5 s (a stage that
    ignores cancellation fails here, with where it was stuck, instead of hanging the suite)."""
    task = asyncio.create_task(coro_fn())
    try:
        yield task
    finally:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        if not done:
            stack = "".join(traceback.format_list(traceback.extract_stack(task.get_stack()[-1]))) if task.get_stack() else "?"
            raise AssertionError(f"{coro_fn} did not stop within 5 s of cancel; stuck at:\n{stack}")


@pytest.fixture
def upsd(tmp_path):
    assert nut.available(), "NUT is not installed: scripts/test.sh installs Debian's nut-server"
    server = nut.NutServer(tmp_path / "nut").start("OL")
    yield server
    server.stop()


def power_cfg(port: int, **over) -> PowerSection:
    base = {"ups": "pihat", "port": port, "poll_period_s": 0.5, "timeout_s": 1.0, "deadline_s": DEADLINE_S}
    return msgspec.convert(base | over, PowerSection)


class Recorder:
    """The monitor's on_change: keeps each event with the monotonic time it arrived."""

    def __init__(self, then=None) -> None:
        self.events: list[tuple[float, PowerEvent]] = []
        self.then = then

    async def __call__(self, ev: PowerEvent) -> None:
        self.events.append((time.monotonic(), ev))
        if self.then is not None:
            await self.then(ev)

    def names(self) -> list[str]:
        return [ev.name for _, ev in self.events]

    def arrival(self, name: str) -> float:
        return next(t for t, ev in self.events if ev.name == name)


class FakeShutdown:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def flush(self) -> None:
        self.calls.append("flush")

    async def announce(self, reason: str) -> None:
        self.calls.append(f"announce:{reason}")

    async def power_off(self) -> None:
        self.calls.append("power_off")


def device_states(centre: Centre) -> list[int]:
    return [o.state for r in centre.data_frames(TypeFlag.DEVICE_STATE) for o in r.objects]


@pytest.mark.slow
async def test_ol_ob_lb_ol_events_type21_bits_and_shutdown(upsd, tmp_path):
    clock = Clock("assume_synced")
    ob = await open_outbox(tmp_path, clock)
    centre = await Centre().start()
    gb = make_client(centre.port, ob, clock)
    fake = FakeShutdown()
    log = structlog.get_logger()
    records = PowerRecords(ob, "gw-test")
    rec = Recorder(records)
    shutdown = LowBatteryShutdown(fake.power_off, log, flush=fake.flush, announce=fake.announce)
    mon = PowerMonitor(power_cfg(upsd.port), clock, log, on_change=rec, shutdown=shutdown)
    latencies: dict[str, float] = {}
    try:
        async with asyncio.timeout(90), running(gb.run), running(mon.run):  # a hang shows where it was stuck
            await async_wait_for(lambda: mon.health()["state"] == "up", what="first read")
            await async_wait_for(lambda: gb.state == "connected", what="centre connected")
            assert rec.events == [] and mon.health()["mains"] == "on"

            t = upsd.set_status("OB DISCHRG", charge=80, runtime_s=900)
            await async_wait_for(lambda: "on_battery" in rec.names(), timeout_s=DEADLINE_S, what="on_battery")
            latencies["OB"] = rec.arrival("on_battery") - t
            assert rec.names() == ["mains_lost", "on_battery"]
            assert mon.health()["state"] == "degraded" and mon.health()["mains"] == "lost"
            assert mon.trouble_reason().startswith("mains_lost")
            await async_wait_for(lambda: any(s & DeviceBit.MAINS_FAULT for s in device_states(centre)), what="b3 at centre")
            assert fake.calls == []  # on battery is not yet a reason to power off

            t = upsd.set_status("OB DISCHRG LB", charge=9, runtime_s=60)
            await async_wait_for(lambda: "battery_low" in rec.names(), timeout_s=DEADLINE_S, what="battery_low")
            latencies["OB LB"] = rec.arrival("battery_low") - t
            await async_wait_for(lambda: "power_off" in fake.calls, what="power-off requested")
            assert fake.calls == ["flush", "announce:power", "power_off"]
            assert shutdown.steps_done == ["flush:ok", "announce:ok", "power_off:ok"]
            want = DeviceBit.NORMAL | DeviceBit.MAINS_FAULT | DeviceBit.BACKUP_POWER_FAULT
            await async_wait_for(lambda: want in device_states(centre), what="b3+b4 at centre")

            t = upsd.set_status("OL CHRG", charge=12, runtime_s=120)
            await async_wait_for(lambda: "battery_ok" in rec.names(), timeout_s=DEADLINE_S, what="all recoveries")
            latencies["OL"] = rec.arrival("on_mains") - t
            assert rec.names()[-3:] == ["mains_restored", "on_mains", "battery_ok"]
            assert mon.health()["state"] == "up" and mon.trouble_reason() == ""
            await async_wait_for(lambda: device_states(centre)[-1] == DeviceBit.NORMAL, what="normal at centre")
            assert fake.calls.count("power_off") == 1  # once per low-battery episode
            # The platform gets every event as an outbox record.
            def kinds() -> list[str]:
                return [r.body["event"] for r in ob.fetch("mqtt", 100) if r.kind == "event.power"]

            await async_wait_for(lambda: kinds() == rec.names(), what="every event committed to the outbox")
    finally:
        # Bounded, so a stuck teardown fails here with its place instead of at pytest-timeout.
        await asyncio.wait_for(centre.stop(), 10)
        await asyncio.wait_for(ob.close(), 10)
    print("power event latency from upsd change, s:", {k: round(v, 2) for k, v in latencies.items()})
    assert max(latencies.values()) < DEADLINE_S


@pytest.mark.slow
async def test_upsd_lost_is_a_backup_fault_within_deadline_and_recovers(upsd):
    rec = Recorder()
    mon = PowerMonitor(power_cfg(upsd.port), Clock("assume_synced"), structlog.get_logger(), on_change=rec)
    async with running(mon.run):
        await async_wait_for(lambda: mon.health()["state"] == "up", what="first read")
        t = time.monotonic()
        upsd.stop("upsd")
        await async_wait_for(lambda: "backup_fault" in rec.names(), timeout_s=DEADLINE_S, what="backup_fault")
        assert rec.arrival("backup_fault") - t < DEADLINE_S
        h = mon.health()
        assert h["state"] == "down" and "unreachable" in h["reason"] and h["battery"]["fault"]
        assert "mains_lost" not in rec.names()  # the last known mains state is kept, not guessed
        upsd.start_upsd()
        await async_wait_for(lambda: "backup_restored" in rec.names(), timeout_s=DEADLINE_S, what="recovered")
        assert mon.health()["state"] == "up"


@pytest.mark.slow
async def test_stale_driver_is_reported(upsd):
    rec = Recorder()
    mon = PowerMonitor(power_cfg(upsd.port), Clock("assume_synced"), structlog.get_logger(), on_change=rec)
    async with running(mon.run):
        await async_wait_for(lambda: mon.health()["state"] == "up", what="first read")
        upsd.stop("driver")  # upsd stays up but loses its driver: ERR DRIVER-NOT-CONNECTED / DATA-STALE
        await async_wait_for(lambda: "backup_fault" in rec.names(), timeout_s=30, what="backup_fault")
        assert any(w in mon.health()["reason"] for w in ("data_stale", "driver_not_connected"))


async def test_no_ups_configured_is_off_not_an_error():
    mon = PowerMonitor(None, Clock("assume_synced"), structlog.get_logger())
    await asyncio.wait_for(mon.run(), 1)  # returns at once: nothing to supervise
    h = mon.health()
    assert h["state"] == "off" and h["ups"] is None and mon.trouble_reason() == ""


async def test_silent_upsd_is_a_backup_fault_within_the_computed_worst_case():
    """A upsd that accepts and never answers (hung host): each read ends at its timeout (aionut retries
    once), and the fault comes within 2 * (poll_period_s + 2 * timeout_s) of the first silence."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = msgspec.convert({"ups": "pihat", "port": port, "poll_period_s": 0.2, "timeout_s": 0.3, "deadline_s": 2}, PowerSection)
    rec = Recorder()
    mon = PowerMonitor(cfg, Clock("assume_synced"), structlog.get_logger(), on_change=rec)
    t = time.monotonic()
    try:
        async with running(mon.run):
            await async_wait_for(lambda: "backup_fault" in rec.names(), timeout_s=10, what="backup_fault")
    finally:
        server.close()
        await server.wait_closed()
    worst = 2 * (cfg.poll_period_s + 2 * cfg.timeout_s)
    assert rec.arrival("backup_fault") - t <= worst + 0.5  # + scheduling slack on a loaded 2-core machine
    assert "timeout" in mon.health()["reason"] or "unreachable" in mon.health()["reason"]
