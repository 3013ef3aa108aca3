"""Replay attacks on the LoRa path over a real pty, through the E22 simulator, with counters persisted in
a real state directory across driver restarts (issue 15 item 5): a replay is a security event, an
authentic alarm is never dropped, a replay never makes a later genuine frame be rejected."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from drivers.base import Command, DriverState
from drivers.lora.simulator import LoraSimulator
from gateway.clock import ManualClock
from gateway.model import EventKind
from tests.integration.lora_rig import GAS_ID, SMOKE_ID, Rig, build_driver, codecs, standard_devices  # noqa: F401 (fixture)
from tests.support.wait import async_wait_for

pytestmark = pytest.mark.usefixtures("codecs")
SMOKE = "smoke-2-1-401"


class Restartable:
    """One simulator (the sensors keep their counters and recordings) and a driver that can be restarted."""

    def __init__(self, link, state_dir, clock=None, **port_kw) -> None:
        self.link, self.state_dir, self.clock, self.port_kw = link, state_dir, clock, port_kw
        self.sim = LoraSimulator(time_scale=1000, seed=11)
        for s in standard_devices()[3]:
            self.sim.add_sensor(s, heartbeats=False)
        self.rig: Rig | None = None
        self._task: asyncio.Task | None = None

    async def start_driver(self) -> Rig:
        driver = build_driver(self.link.a, self.clock, state_dir=self.state_dir, **self.port_kw)
        items: list = []
        self._task = asyncio.create_task(driver.run(items.append))
        self.rig = Rig(driver, self.sim, items)
        await async_wait_for(lambda: driver.health().state is not DriverState.DOWN, what="port open")
        return self.rig

    async def stop_driver(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def heard(self, device_id: str, frames: int) -> None:
        assert self.rig is not None
        await async_wait_for(lambda: self.rig.radio(device_id)["frames"] >= frames, what=f"{frames} frames of {device_id}")


@contextlib.asynccontextmanager
async def restartable(link, state_dir, **kw):
    r = Restartable(link, state_dir, **kw)
    await r.sim.start(link.b)
    try:
        yield r
    finally:
        if r._task is not None and not r._task.done():
            await r.stop_driver()
        await r.sim.stop()


async def test_replay_after_a_restart_is_a_security_event_not_a_new_frame(pty_link, tmp_path):
    async with restartable(pty_link(), tmp_path) as r:
        rig = await r.start_driver()
        for _ in range(4):
            r.sim.trigger(SMOKE_ID, "heartbeat")
        await r.heard(SMOKE, 4)
        recorded = r.sim.sensors[SMOKE_ID].sent[1]  # an attacker recorded frame 1
        await r.stop_driver()
        assert (tmp_path / "counters-lora.json").exists()
        rig = await r.start_driver()
        r.sim.send_frame(recorded, SMOKE_ID)  # the FIRST frame after the restart: not trusted
        (sec,) = await async_wait_for(lambda: rig.events(SMOKE, EventKind.SECURITY), what="security event")
        assert sec.code == "replay_suspect" and sec.detail == {"counter": 1, "last_counter": 3, "alarm": False}
        assert not rig.events(SMOKE, EventKind.HEARTBEAT) and not rig.readings(SMOKE)
        assert rig.radio(SMOKE)["replay"]["replay_suspects"] == 1 and rig.radio(SMOKE)["replay"]["replay_dropped"] == 2
        r.sim.trigger(SMOKE_ID, "alarm")  # the genuine next frame (counter 4)
        (alarm,) = await async_wait_for(lambda: rig.events(SMOKE, EventKind.ALARM), what="genuine alarm")
        assert "replay_suspect" not in alarm.detail


async def test_replay_after_a_long_quiet_period_is_still_suspect(pty_link, tmp_path):
    clock = ManualClock()
    async with restartable(pty_link(), tmp_path, clock=clock) as r:
        rig = await r.start_driver()
        r.sim.trigger(GAS_ID, "heartbeat")
        r.sim.trigger(GAS_ID, "heartbeat")
        await r.heard("gas-3-kitchen", 2)
        clock.advance(7 * 86400)  # a week without frames (the old quiet-time reset was 300 s)
        r.sim.send_frame(r.sim.sensors[GAS_ID].sent[0], GAS_ID)
        await async_wait_for(lambda: rig.events("gas-3-kitchen", EventKind.SECURITY), what="security event")
        assert rig.driver.replay.last(rig.driver._rkey[GAS_ID]) == 1


async def test_replayed_low_counter_never_makes_the_genuine_alarm_at_2000_rejected(pty_link, tmp_path):
    """Issue 15: a replayed counter 5 after a restart used to reset the counter; the genuine smoke alarm
    at 2000 was then rejected as counter_jump forever."""
    async with restartable(pty_link(), tmp_path) as r:
        rig = await r.start_driver()
        sensor = r.sim.sensors[SMOKE_ID]
        sensor.fcnt = 5
        r.sim.trigger(SMOKE_ID, "heartbeat")
        sensor.fcnt = 1500
        r.sim.trigger(SMOKE_ID, "heartbeat")
        await r.heard(SMOKE, 2)
        recorded_5 = sensor.sent[0]
        await r.stop_driver()
        rig = await r.start_driver()
        for _ in range(3):  # replayed again and again: it must not re-sync the device either
            r.sim.send_frame(recorded_5, SMOKE_ID)
        await async_wait_for(lambda: len(rig.events(SMOKE, EventKind.SECURITY)) == 3, what="three suspects")
        sensor.fcnt = 2000
        r.sim.trigger(SMOKE_ID, "alarm")
        (alarm,) = await async_wait_for(lambda: rig.events(SMOKE, EventKind.ALARM), what="the genuine alarm at 2000")
        assert "replay_suspect" not in alarm.detail and rig.radio(SMOKE)["last_fcnt"] == 2000


async def test_replayed_alarm_frame_is_emitted_flagged_and_counted(pty_link, tmp_path):
    async with restartable(pty_link(), tmp_path) as r:
        rig = await r.start_driver()
        r.sim.trigger(SMOKE_ID, "alarm")
        r.sim.trigger(SMOKE_ID, "alarm_cleared")
        r.sim.trigger(SMOKE_ID, "heartbeat")
        await r.heard(SMOKE, 3)
        r.sim.send_frame(r.sim.sensors[SMOKE_ID].sent[0], SMOKE_ID)  # the recorded alarm
        r.sim.send_frame(r.sim.sensors[SMOKE_ID].sent[1], SMOKE_ID)  # a recorded "cleared": must not clear anything
        await async_wait_for(lambda: len(rig.events(SMOKE, EventKind.SECURITY)) == 2, what="two suspects")
        first, flagged = rig.events(SMOKE, EventKind.ALARM)
        assert "replay_suspect" not in first.detail and flagged.detail["replay_suspect"] is True
        assert len(rig.events(SMOKE, EventKind.ALARM_CLEARED)) == 1  # only the genuine one
        sec = rig.events(SMOKE, EventKind.SECURITY)
        assert [s.detail["alarm"] for s in sec] == [True, False]
        h = rig.driver.health()
        assert h.counters["replay_suspects"] == 2 and h.counters["replay_alarms_flagged"] == 1
        assert h.detail["devices"][SMOKE]["replay"]["replay_alarms_flagged"] == 1


async def test_unwritable_state_dir_keeps_the_driver_hearing_and_says_so(pty_link, tmp_path):
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("not a directory")
    async with restartable(pty_link(), blocker) as r:
        rig = await r.start_driver()
        r.sim.trigger(SMOKE_ID, "alarm")  # an alarm frame asks for a write within a second
        await async_wait_for(lambda: rig.events(SMOKE, EventKind.ALARM), what="alarm heard")
        await async_wait_for(lambda: rig.driver.health().counters["state_write_failed"] >= 1, what="write failure counted")
        state = rig.driver.health().detail["counter_state"]
        assert state["persisted"] is False and "cannot write" in state["error"]
        r.sim.trigger(GAS_ID, "alarm_high")
        await async_wait_for(lambda: rig.events("gas-3-kitchen", EventKind.ALARM), what="still hearing")
        assert rig.driver.health().state is DriverState.OK


async def test_corrupt_state_file_is_ignored_counted_and_replaced(pty_link, tmp_path):
    (tmp_path / "counters-lora.json").write_text('{"v": 1, "records": [')
    async with restartable(pty_link(), tmp_path) as r:
        rig = await r.start_driver()
        assert rig.driver.health().counters["state_corrupt"] == 1
        r.sim.trigger(SMOKE_ID, "alarm")
        await async_wait_for(lambda: rig.events(SMOKE, EventKind.ALARM), what="alarm heard")
        await async_wait_for(lambda: rig.driver.health().detail["counter_state"]["persisted"], what="state rewritten")


async def test_downlink_counters_are_reserved_ahead_and_never_repeat_after_a_restart(pty_link, tmp_path):
    async with restartable(pty_link(), tmp_path) as r:
        rig = await r.start_driver()
        await rig.driver.write(Command(SMOKE, "silence", True))
        await async_wait_for(lambda: len(r.sim.downlinks) == 1, what="first downlink")
        await r.stop_driver()
        rig = await r.start_driver()
        await rig.driver.write(Command(SMOKE, "silence", True))
        await async_wait_for(lambda: len(r.sim.downlinks) == 2, what="second downlink")
        assert [d.frame.fcnt for d in r.sim.downlinks] == [0, 16]  # the next reserved block


async def test_keyless_device_follows_the_same_rules_unauthenticated(pty_link, tmp_path):
    from tests.integration.lora_rig import FLOW_ID

    async with restartable(pty_link(), tmp_path) as r:
        rig = await r.start_driver()
        r.sim.trigger(FLOW_ID, "flow_started")
        r.sim.trigger(FLOW_ID, "flow_stopped")
        await r.heard("flow-riser-1", 2)
        r.sim.send_frame(r.sim.sensors[FLOW_ID].sent[0], FLOW_ID)  # CRC-16 frames: anyone can replay (or forge) them
        await async_wait_for(lambda: rig.events("flow-riser-1", EventKind.SECURITY), what="security event")
        flagged = [e for e in rig.events("flow-riser-1", EventKind.ALARM) if e.detail.get("replay_suspect")]
        assert len(flagged) == 1 and len(rig.events("flow-riser-1", EventKind.ALARM)) == 2


def test_health_lists_a_device_whose_key_is_missing(tmp_path):
    from tests.integration.lora_rig import KEY_HEX

    driver = build_driver(str(tmp_path / "tty"), secrets={"gas-3-kitchen": KEY_HEX[::-1]}, state_dir=tmp_path)
    h = driver.health()
    assert h.detail["devices"][SMOKE]["replay"]["replay_suspects"] == 0 and SMOKE in h.detail["misconfigured"]
