"""The `lora_listen` diagnostic (issue 20) on real parts: the E22 driver over a pty pair with the E22
simulator, the LoRaWAN driver over real UDP GWMP with the forwarder simulator, and the CLI over a real
control socket. A frame sent during the window appears with its verdict, a replay as replay_suspect,
an unknown sender as such; the tap is gone when the window ends or its caller vanishes; a broken
observer never costs an alarm."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from drivers.base import DriverState, RadioTap
from drivers.lora.frame import FrameType, encode
from gateway.clock import Clock, ManualClock
from gateway.control.server import ControlServer
from gateway.errors import CommandRejected
from gateway.fleet.listen import RadioListen
from gateway.log import get as get_log
from gateway.model import EventKind
from tests.integration import lora_rig, lorawan_rig
from tests.integration.lora_rig import SMOKE_ID, codecs  # noqa: F401 (fixture)
from tests.support.wait import async_wait_for

SMOKE = "smoke-2-1-401"


def listener(drivers: dict, clock=None) -> RadioListen:
    clock = clock or Clock("assume_synced")
    return RadioListen(lambda: drivers, lambda: clock)


def rows(w, verdict: str) -> list[dict]:
    return [f for f in w.frames if f["verdict"] == verdict]


@pytest.mark.usefixtures("codecs")
async def test_e22_frames_in_the_window_appear_with_their_verdicts_and_the_tap_goes_at_the_end(pty_link):
    async with lora_rig.rig(pty_link()) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        assert isinstance(r.driver, RadioTap)
        listen = listener({"lora": r.driver})
        w = listen.start({"seconds": 3})
        with pytest.raises(CommandRejected) as busy:
            listen.start({"seconds": 3})
        assert busy.value.reason == "busy"
        r.sim.trigger(SMOKE_ID, "alarm")
        (ok,) = await async_wait_for(lambda: rows(w, "accepted"), what="accepted frame listed")
        assert ok["source"] == f"{SMOKE_ID:08x}" and ok["device_id"] == SMOKE and ok["port"] == "lora"
        assert ok["rssi_dbm"] == -97 and ok["snr_db"] is None and ok["kind"] == "report" and ok["length"] > 14
        assert r.events(SMOKE, EventKind.ALARM)  # the alarm went out as ever
        recorded = r.sim.sensors[SMOKE_ID].sent[-1]
        r.sim.send_frame(recorded, SMOKE_ID)  # the same frame again: the guard's duplicate (radio echo)
        r.sim.trigger(SMOKE_ID, "heartbeat")
        r.sim.send_frame(recorded, SMOKE_ID)  # now below the mark: a replay
        (rep,) = await async_wait_for(lambda: rows(w, "replay_suspect"), what="replay listed")
        assert rep["device_id"] == SMOKE and rep["fcnt"] == ok["fcnt"] and rows(w, "duplicate")
        stranger = encode(0x0BADBEEF, 5, FrameType.REPORT, b"\x01\x02", None)  # a keyless sensor not in the config
        r.sim.send_frame(stranger)
        (unk,) = await async_wait_for(lambda: rows(w, "unknown_device"), what="unknown sender listed")
        assert unk["source"] == "0badbeef" and unk["device_id"] == "" and unk["length"] == len(stranger)
        await asyncio.wait_for(w.ended.wait(), 10)
        assert r.driver.tap.observers == [] and w.end_reason == "time_up"
        report = listen.window.report()
        assert report["state"] == "done" and report["counts"]["accepted"] >= 2 and not report["truncated"]
        heard = report["heard"]
        r.sim.trigger(SMOKE_ID, "heartbeat")  # after the window: not listed, not counted
        await async_wait_for(lambda: r.radio(SMOKE)["frames"] >= 3, what="frame after the window handled")
        assert listen.window.report()["heard"] == heard
        listen.start({"seconds": 1}).close()  # a new window is allowed once the last one ended


@pytest.mark.usefixtures("codecs")
async def test_a_vanished_caller_and_a_broken_observer_leave_no_tap_and_cost_no_alarm(pty_link):
    async with lora_rig.rig(pty_link()) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        listen = listener({"lora": r.driver})
        task = asyncio.create_task(listen.listen({"seconds": 60}))
        await async_wait_for(lambda: r.driver.tap.observers, what="tap attached")
        task.cancel()  # the control connection's task is cancelled (daemon stopping)
        await asyncio.gather(task, return_exceptions=True)
        assert r.driver.tap.observers == [] and listen.window.end_reason == "caller_gone"

        def broken(heard):
            raise RuntimeError("observer bug")

        r.driver.add_observer(broken)
        r.sim.trigger(SMOKE_ID, "alarm")
        await async_wait_for(lambda: r.events(SMOKE, EventKind.ALARM), what="alarm despite the broken observer")
        assert r.driver.tap.observers == [] and r.driver.health().counters["tap_errors"] == 1


async def test_lorawan_rxpk_frames_appear_with_rssi_snr_and_verdicts(tmp_path):
    clock = ManualClock()
    async with lorawan_rig.rig(tmp_path, clock=clock) as r:
        listen = listener({"lw": r.driver}, clock)
        w = listen.start({"seconds": 30})
        r.sim.report("leak-riser", "heartbeat")
        (ok,) = await async_wait_for(lambda: rows(w, "accepted"), what="accepted uplink listed")
        assert ok["source"] == lorawan_rig.LEAK_ADDR and ok["device_id"] == "leak-riser" and ok["kind"] == "unconfirmed_up"
        assert ok["rssi_dbm"] == r.sim.devices["leak-riser"].rssi_dbm and ok["snr_db"] == r.sim.devices["leak-riser"].snr_db
        old = r.sim.devices["leak-riser"].last_phy
        assert ok["length"] == len(old) and ok["fcnt"] == 0
        r.sim.report("leak-riser", "heartbeat")
        await async_wait_for(lambda: len(rows(w, "accepted")) == 2, what="second uplink")
        clock.advance(5)  # beyond the de-duplication window: a replay, not another chain's copy
        r.sim.send(old, rssi_dbm=-80, lsnr_db=9.5)
        (rep,) = await async_wait_for(lambda: rows(w, "replay_suspect"), what="replay listed")
        assert rep["device_id"] == "leak-riser" and rep["rssi_dbm"] == -80 and rep["snr_db"] == 9.5 and rep["fcnt"] == 0
        r.sim.set_fault("wrong_mic", "smoke-2-401")
        r.sim.report("smoke-2-401", "heartbeat")
        await async_wait_for(lambda: rows(w, "mic"), what="bad MIC listed")
        stranger = bytearray(old)
        stranger[1:5] = bytes.fromhex("01020304")[::-1]  # another network's DevAddr
        r.sim.send(bytes(stranger))
        (unk,) = await async_wait_for(lambda: rows(w, "unknown_devaddr"), what="unknown DevAddr listed")
        assert unk["source"] == "01020304" and unk["device_id"] == ""
        r.sim.join("gas-3-102")
        (join,) = await async_wait_for(lambda: [f for f in w.frames if f["kind"] == "join"], what="join listed")
        assert join["verdict"] == "accepted" and join["source"] == lorawan_rig.GAS_EUI and join["device_id"] == "gas-3-102"
        assert r.events("leak-riser", EventKind.SECURITY, "replay_suspect")  # the driver's own handling is unchanged
        w.close()
        assert r.driver.tap.observers == []


@pytest.mark.usefixtures("codecs")
async def test_cli_lora_listen_over_the_control_socket(pty_link, tmp_path):
    async with lora_rig.rig(pty_link()) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        listen = listener({"lora": r.driver})
        sock = tmp_path / "control.sock"
        server = ControlServer(str(sock), {"lora_listen": listen.listen}, set(), get_log())
        serving = asyncio.create_task(server.run())
        try:
            await async_wait_for(sock.exists, what="control socket")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "lora", "listen", "--seconds", "2", "--json", "--socket", str(sock),
                "--config", str(tmp_path / "absent.toml"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            await async_wait_for(lambda: r.driver.tap.observers, timeout_s=30, what="the CLI's listen started")
            r.sim.trigger(SMOKE_ID, "alarm")
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()
            report = json.loads(out)
            assert report["state"] == "done" and report["ports"] == ["lora"]
            assert SMOKE in [f["device_id"] for f in report["frames"] if f["verdict"] == "accepted"]
            assert r.driver.tap.observers == []
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "lora", "listen", "--seconds", "500", "--socket", str(sock),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode != 0 and b"at most 120" in err
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)


@pytest.mark.usefixtures("codecs")
async def test_a_flood_during_the_window_is_counted_past_the_cap_and_an_alarm_still_arrives(pty_link, monkeypatch):
    import random
    import time

    from gateway.fleet.listen import ListenWindow
    from tests.reliability.test_flood_lora import flood

    spent = [0.0]
    observe = ListenWindow.observe

    def timed(self, heard):  # the observer's own cost per frame, on the receive path
        t = time.perf_counter()
        observe(self, heard)
        spent[0] += time.perf_counter() - t

    monkeypatch.setattr(ListenWindow, "observe", timed)
    frames = flood(random.Random(20), 4000)
    async with lora_rig.rig(pty_link()) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        w = listener({"lora": r.driver}).start({"seconds": 60})
        base = r.driver.health().counters["bytes_in"]
        r.sim.send_raw(b"".join(frames))
        await async_wait_for(lambda: r.driver.health().counters["bytes_in"] - base >= sum(map(len, frames)), timeout_s=60,
                             what="flood read")
        r.sim.trigger(SMOKE_ID, "alarm")
        await async_wait_for(lambda: r.events(SMOKE, EventKind.ALARM), timeout_s=15, what="alarm after the flood")
        report = w.report()
        w.close()
        assert report["truncated"] and len(report["frames"]) == 200 and report["heard"] == sum(report["counts"].values())
        assert report["heard"] > 1000 and report["counts"]["accepted"] >= 1 and r.driver.tap.observers == []
        per_frame_us = 1e6 * spent[0] / report["heard"]
        print(f"\nLISTEN flood: heard={report['heard']} listed={len(report['frames'])} observer_us_per_frame={per_frame_us:.1f}")
        assert per_frame_us < 500  # microseconds, on a loaded 2-core machine
