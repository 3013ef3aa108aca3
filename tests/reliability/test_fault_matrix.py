"""The fault matrix (issue 15): one row per fault. Each row asserts that a smoke alarm raised during the
fault drives the sounder and sends its SMS, that the trouble indication comes on within its deadline and
goes off after, and that what was queued during the fault reaches the platform afterwards, no hole in seq.

Rows for the store's own faults live in test_fault_matrix_store.py (they need a tmpfs).
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time

import pytest

from gateway.simulate.proxy import Mode
from tests.reliability.matrix_rig import TROUBLE, Rig
from tests.support.wait import async_wait_for

pytestmark = pytest.mark.slow
SLACK_S = 4.0  # process scheduling on a loaded 2-core machine, on top of deadline + check period


async def delivered_without_holes(rig: Rig) -> None:
    await async_wait_for(lambda: any(r.get("cls") == "alarm" for r in rig.view.records), 20, what="alarm at the platform")
    await async_wait_for(lambda: rig.view.ledger.holes() == {}, 20, what="no hole in seq at the platform")


async def test_broker_down(rig):
    await rig.start()
    await rig.run_daemon()
    await async_wait_for(lambda: rig.view.telemetry_count > 0, 30, what="telemetry before the fault")
    assert not rig.coil("trouble")
    rig.fault_starts()
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
    rig.fault_starts()
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
    # A silent slave is polled again after min(period x 2^failures, backoff_cap_s): its fault clears at the
    # first poll it answers, which the shipped 60 s cap put 16 s after the box was back.
    await rig.start(bend=lambda doc: doc["ports"]["rs485"].update(backoff_cap_s=2.0))
    await rig.run_daemon()
    t0 = time.monotonic()
    rig.cy.sims["modbus_rtu"].set_fault(10, silent=True)
    await async_wait_for(lambda: "sounder" in rig.faults(), 30, interval_s=0.2, what="relay box fault in status")
    rig.figures["trouble_on_s"] = round(time.monotonic() - t0, 2)  # in status: the lamp is on the silent box
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
    second = rig.spawn(refused=True)
    code = await asyncio.get_running_loop().run_in_executor(None, second.wait, 20)
    assert code == 1
    assert f"PID {first.pid}" in rig.log.read_text()
    assert first.poll() is None and rig.status()["gateway_id"] == "gw-xinhong-03"
    assert await rig.smoke() < 2.0
    await delivered_without_holes(rig)
    assert rig.status()["trouble"] == []


# A local process in the socket's group holding connections open: its own process, so the simulated
# courtyard (in this test's event loop) keeps running while it connects.
FLOODER = """
import socket, sys
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(sys.argv[1])
    except OSError:
        pass
    held.append(s)
print(len(held), flush=True)
sys.stdin.read()  # hold them until the test closes our stdin
"""


async def test_control_socket_flooded_to_the_fd_limit(rig):
    await rig.start()
    await rig.run_daemon(nofile=1024)  # systemd's default soft limit, before our LimitNOFILE
    flooder = subprocess.Popen([sys.executable, "-c", FLOODER, rig.socket, "1100"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096)))
    try:
        line = await asyncio.get_running_loop().run_in_executor(None, flooder.stdout.readline)
        assert int(line) == 1100
        rig.fault_starts()
        assert await rig.smoke() < 2.0  # sounder and SMS, with 1,100 clients knocking
        await delivered_without_holes(rig)  # the uplink still publishes
    finally:
        flooder.stdin.close()
        await asyncio.get_running_loop().run_in_executor(None, flooder.wait, 10)
    # The daemon answers again once they are gone, and its log was not flooded.
    await async_wait_for(lambda: rig.status()["gateway_id"] == "gw-xinhong-03", 10, what="control socket answers")
    assert rig.status()["trouble"] == []
    assert rig.status()["control"]["busy"] > 0  # the clients past the cap were answered "busy" and closed
    assert rig.log.stat().st_size < 5_000_000


async def test_clean_stop_exit_code(rig):
    """Control row: no fault, no trouble, and SIGTERM gives exit 0 (the fixture checks)."""
    await rig.start()
    proc = await rig.run_daemon()
    await async_wait_for(lambda: rig.view.telemetry_count > 0, 30, what="telemetry")
    assert rig.status()["trouble"] == []
    proc.terminate()
    assert await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15) == 0


# ---- replayed radio frames (issue 15, item 5) -----------------------------------------------------
async def _heartbeats(rig: Rig, dev, n: int) -> None:
    sim, addr = rig.cy.sims["lora"], int(dev.address)
    for _ in range(n):
        sim.send_frame(sim.sensors[addr].report("heartbeat"), addr)
    last = sim.sensors[addr].fcnt - 1
    await async_wait_for(lambda: rig.lora_device_status(dev.id).get("last_fcnt") == last, 20, interval_s=0.1,
                         what=f"{dev.id} heard up to counter {last}")


async def _replay_then_genuine_alarm(rig: Rig, dev) -> None:
    sim, addr = rig.cy.sims["lora"], int(dev.address)
    sim.send_frame(sim.sensors[addr].sent[0], addr)  # a recorded genuine frame, counter 0
    await async_wait_for(lambda: rig.lora_device_status(dev.id).get("replay", {}).get("replay_suspects", 0) >= 1
                         or any(r.get("kind") == "event.security" and r.get("device") == dev.id for r in rig.view.records),
                         20, interval_s=0.1, what="the replay recorded as a security event")
    # The detector's real smoke alarm, at a later counter, is heard: the replay deafened nothing.
    assert await rig.smoke(dev=dev) < 2.0
    await async_wait_for(lambda: any(r.get("kind") == "event.security" and r.get("device") == dev.id for r in rig.view.records),
                         20, what="security event at the platform")


async def test_lora_replay_after_restart(rig):
    await rig.start()
    await rig.run_daemon()
    dev = rig.smoke_device()
    await _heartbeats(rig, dev, 3)
    await rig.restart_daemon()  # counters persisted: the first frame after the restart is not trusted
    await _replay_then_genuine_alarm(rig, dev)


async def test_lora_replay_after_a_quiet_period(rig):
    def quiet_reset(doc):  # the old trust-after-quiet rule, set short: it must have no effect any more
        next(p for p in doc["ports"].values() if p["driver"] == "lora_e22")["counter_reset_quiet_s"] = 1.0

    await rig.start(quiet_reset)
    await rig.run_daemon()
    dev = rig.smoke_device()
    await _heartbeats(rig, dev, 3)
    await asyncio.sleep(1.5)  # the detector is quiet longer than counter_reset_quiet_s (the fault itself)
    await _replay_then_genuine_alarm(rig, dev)


# ---- a flood of downlink commands (issue 15, item 6) ----------------------------------------------
async def test_command_flood_on_cmd(rig):
    import paho.mqtt.client as mqtt

    await rig.start()
    await rig.run_daemon()
    await async_wait_for(lambda: rig.view.telemetry_count > 0, 30, what="uplink connected")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", rig.broker.port)
    pub.loop_start()
    junk = b'{"cmd": "ack_alarm", "args": {"pad": "' + b"x" * 30_000 + b'"}}'
    try:
        infos = [pub.publish("cg/v1/gw-xinhong-03/cmd", junk, qos=0) for _ in range(3000)]
        assert await rig.smoke() < 2.0  # while 90 MB of unsigned commands arrive
        for info in infos[-10:]:
            info.wait_for_publish(30)
    finally:
        pub.loop_stop()
        pub.disconnect()
    def refused() -> int:
        c = rig.status()["uplink"]["commands"]
        return sum(c["rejected"].values()) + c["refused_busy"] + c["refused_oversized"]

    await async_wait_for(lambda: refused() >= 1000, 60, interval_s=0.5, what="the flood refused, counted")
    await delivered_without_holes(rig)
