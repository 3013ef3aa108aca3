"""The fault matrix (issue 15): one row per fault. Each row asserts that a smoke alarm raised during the
fault drives the sounder and sends its SMS, that the trouble indication comes on within its deadline and
goes off after, and that what was queued during the fault reaches the platform afterwards, no hole in seq.

Rows for the store's own faults live in test_fault_matrix_store.py (they need a tmpfs).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess

import pytest

from gateway.simulate.proxy import Mode
from tests.reliability.matrix_rig import TROUBLE, Rig
from tests.support.wait import async_wait_for

pytestmark = pytest.mark.slow
SLACK_S = 4.0  # process scheduling on a loaded 2-core machine, on top of deadline + check period


@pytest.fixture
async def rig(tmp_path, broker):
    r = Rig(tmp_path, broker)
    yield r
    codes = await r.stop()
    assert all(c in (0, 1) for c in codes), f"daemon exit codes {codes}: {r.log.read_text()[-3000:]}"


async def delivered_without_holes(rig: Rig) -> None:
    await async_wait_for(lambda: any(r.get("cls") == "alarm" for r in rig.view.records), 20, what="alarm at the platform")
    await async_wait_for(lambda: rig.view.ledger.holes() == {}, 20, what="no hole in seq at the platform")


async def test_broker_down(rig):
    await rig.start()
    await rig.run_daemon()
    await async_wait_for(lambda: rig.view.telemetry_count > 0, 30, what="telemetry before the fault")
    assert not rig.coil("trouble")
    rig.cy.proxy.set_mode(Mode.BLACKHOLE)
    latency = await rig.smoke()
    assert latency < 2.0
    took = await rig.trouble_within(TROUBLE["uplink_after_s"] + TROUBLE["check_period_s"] + SLACK_S + 5)
    assert "uplink" in rig.faults()
    rig.cy.proxy.set_mode(Mode.PASS)
    await rig.trouble_within(30, on=False)
    await delivered_without_holes(rig)
    assert took > 0


async def test_modem_removed(rig):
    await rig.start()
    await rig.run_daemon()
    modem = rig.cy.sims["sms"]
    modem.close_port()  # a USB unplug: the gateway's path vanishes
    await rig.trouble_within(TROUBLE["bus_after_s"] + TROUBLE["check_period_s"] + SLACK_S + 10)
    assert any(src.startswith("port:") for src in rig.faults())
    dev = rig.smoke_device()
    await rig.cy.trigger("smoke", dev.id)
    await async_wait_for(lambda: rig.coil("sounder"), 2.0, interval_s=0.005, what="sounder on without a modem")
    modem.open_port() if hasattr(modem, "open_port") else await modem.start(rig.cy.tty("sms"), create_pty=True)
    # The SMS waited for the modem (deferred, never dropped) and goes once it is back.
    await rig.sms_for(f"{dev.building}栋{dev.unit}单元{dev.room}", timeout_s=60)
    await rig.trouble_within(60, on=False)


async def test_relay_box_silent(rig):
    await rig.start()
    await rig.run_daemon()
    rig.cy.sims["modbus_rtu"].set_fault(10, silent=True)
    await async_wait_for(lambda: "sounder" in rig.faults(), 30, interval_s=0.2, what="relay box fault in status")
    dev = rig.smoke_device()
    await rig.cy.trigger("smoke", dev.id)
    await rig.sms_for(f"{dev.building}栋{dev.unit}单元{dev.room}")  # the SMS does not depend on the relay box
    rig.cy.sims["modbus_rtu"].clear_faults()
    # The alarm is still active: the sounder write is retried and lands once the box answers again.
    await async_wait_for(lambda: rig.coil("sounder"), 30, what="sounder on after the relay box is back")
    await async_wait_for(lambda: "sounder" not in rig.faults(), 30, interval_s=0.2, what="relay box fault cleared")


async def test_second_gateway_run_is_refused(rig):
    await rig.start()
    first = await rig.run_daemon()
    second = rig.spawn()
    code = await asyncio.get_running_loop().run_in_executor(None, second.wait, 20)
    assert code == 1
    assert f"PID {first.pid}" in rig.log.read_text()
    assert first.poll() is None and rig.status()["gateway_id"] == "gw-xinhong-03"
    assert await rig.smoke() < 2.0
    await delivered_without_holes(rig)
    assert rig.status()["trouble"] == []


async def test_control_socket_flooded_to_the_fd_limit(rig):
    await rig.start()
    await rig.run_daemon(nofile=1024)  # systemd's default soft limit, before our LimitNOFILE
    held: list[socket.socket] = []
    try:
        for _ in range(1100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(rig.socket)
            except (BlockingIOError, ConnectionRefusedError, OSError):
                pass
            held.append(s)
        assert await rig.smoke() < 2.0  # sounder and SMS, with 1,100 clients knocking
        await delivered_without_holes(rig)  # the uplink still publishes
    finally:
        for s in held:
            s.close()
    # The daemon answers again once they are gone, and its log was not flooded.
    await async_wait_for(lambda: rig.status()["gateway_id"] == "gw-xinhong-03", 10, what="control socket answers")
    assert rig.log.stat().st_size < 5_000_000


async def test_clean_stop_exit_code(rig):
    """Control row: no fault, no trouble, and SIGTERM gives exit 0 (the fixture checks)."""
    await rig.start()
    proc = await rig.run_daemon()
    await async_wait_for(lambda: rig.view.telemetry_count > 0, 30, what="telemetry")
    assert rig.status()["trouble"] == []
    proc.terminate()
    assert await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15) == 0
