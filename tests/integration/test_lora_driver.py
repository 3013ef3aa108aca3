"""LoRa end to end over a socat pty pair: the E22 simulator (product code) on one end, our driver on
the other. Alarms, faults on the radio, replay, downlink bytes, unplug."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from drivers.base import Command, DriverState
from drivers.lora.frame import FrameType
from gateway.clock import ManualClock
from gateway.errors import CommandRejected
from gateway.model import EventKind
from tests.integration.lora_rig import FLOW_ID, GAS_ID, SMOKE_ID, codecs, rig  # noqa: F401 (fixture)
from tests.support.wait import async_wait_for

pytestmark = pytest.mark.usefixtures("codecs")


async def test_smoke_alarm_frame_becomes_alarm_event_for_the_right_device(pty_link):
    async with rig(pty_link()) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        r.sim.trigger(SMOKE_ID, "alarm")
        (alarm,) = await async_wait_for(lambda: r.events("smoke-2-1-401", EventKind.ALARM), what="smoke alarm event")
        assert alarm.code == "smoke" and alarm.via == "lora"
        reading = r.readings("smoke-2-1-401")[-1]
        assert reading.values["alarm"] is True and reading.values["rssi_dbm"] == -97
        radio = r.radio("smoke-2-1-401")
        assert radio["last_rssi_dbm"] == -97 and radio["frames"] == 1 and radio["last_seen_wall_s"]
        assert not r.events("gas-3-kitchen", EventKind.ALARM)


async def test_keyless_and_other_keyed_sensors_decode(pty_link):
    async with rig(pty_link()) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        r.sim.trigger(GAS_ID, "alarm_high")
        r.sim.trigger(FLOW_ID, "flow_started")
        await async_wait_for(lambda: r.events("gas-3-kitchen", EventKind.ALARM) and r.events("flow-riser-1", EventKind.ALARM))
        assert r.events("gas-3-kitchen", EventKind.ALARM)[0].code == "gas_high"
        assert r.events("flow-riser-1", EventKind.ALARM)[0].code == "water_flow"


async def test_radio_faults_are_rejected_counted_and_the_next_alarm_still_arrives(pty_link):
    async with rig(pty_link()) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        r.sim.set_fault("bit_flip", SMOKE_ID)
        r.sim.trigger(SMOKE_ID, "heartbeat")
        await async_wait_for(lambda: r.driver.deframer.rejects.get("bad_mic"), what="bit flip rejected")
        r.sim.set_fault("duplicate", GAS_ID)
        r.sim.trigger(GAS_ID, "heartbeat")
        await async_wait_for(lambda: r.radio("gas-3-kitchen")["rejects"].get("duplicate"), what="duplicate rejected")
        r.sim.trigger(GAS_ID, "heartbeat")
        r.sim.set_fault("replay", GAS_ID)
        r.sim.trigger(GAS_ID, "heartbeat")
        await async_wait_for(lambda: r.radio("gas-3-kitchen")["rejects"].get("replay_suspect"), what="replay suspected")
        r.sim.set_fault("noise")
        r.sim.trigger(SMOKE_ID, "alarm")
        await async_wait_for(lambda: r.events("smoke-2-1-401", EventKind.ALARM), what="alarm after the faults")
        h = r.driver.health()
        assert h.counters["reject_bad_mic"] == 1 and h.counters["reject_duplicate"] == 1 and h.counters["replay_suspects"] == 1
        assert r.events("gas-3-kitchen", EventKind.SECURITY)[0].code == "replay_suspect"
        assert h.counters["discarded_bytes"] > 0


async def test_truncated_frame_expires_and_the_following_frame_is_decoded(pty_link):
    async with rig(pty_link(), frame_timeout_s=0.3) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        r.sim.set_fault("truncated", SMOKE_ID)
        r.sim.trigger(SMOKE_ID, "heartbeat")
        await async_wait_for(lambda: r.driver.deframer.rejects.get("truncated"), what="truncated frame expired")
        r.sim.trigger(SMOKE_ID, "alarm")
        await async_wait_for(lambda: r.events("smoke-2-1-401", EventKind.ALARM), what="alarm after truncation")


async def test_counter_reset_resyncs_after_k_increasing_frames_over_time_with_event(pty_link):
    clock = ManualClock()
    async with rig(pty_link(), clock=clock, resync_frames=3, resync_min_s=600) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        sensor = r.sim.sensors[GAS_ID]
        sensor.fcnt = 5000
        r.sim.trigger(GAS_ID, "heartbeat")
        await async_wait_for(lambda: r.radio("gas-3-kitchen")["frames"] == 1)
        sensor.fcnt = 0  # battery changed: the counter restarts
        for n in (1, 2):
            r.sim.trigger(GAS_ID, "heartbeat")
            await async_wait_for(lambda n=n: r.radio("gas-3-kitchen")["rejects"].get("replay_suspect") == n, what="suspect")
            clock.advance(300)
        r.sim.trigger(GAS_ID, "heartbeat")
        (ev,) = await async_wait_for(lambda: r.events("gas-3-kitchen", EventKind.COUNTER_RESET), what="counter_reset")
        assert ev.code == "counter_reset" and ev.detail == {"fcnt": 2, "last_fcnt": 5000}
        assert r.radio("gas-3-kitchen")["counter_resets"] == 1 and r.radio("gas-3-kitchen")["last_fcnt"] == 2
        r.sim.trigger(GAS_ID, "alarm_high")
        (alarm,) = await async_wait_for(lambda: r.events("gas-3-kitchen", EventKind.ALARM), what="alarm in the new epoch")
        assert "replay_suspect" not in alarm.detail


async def test_downlink_silence_bytes_are_exact_and_the_detector_acknowledges(pty_link):
    async with rig(pty_link(), channel=23) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        await r.driver.write(Command("smoke-2-1-401", "silence", True, reason="guard pressed silence"))
        (down,) = await async_wait_for(lambda: r.sim.downlinks, what="downlink at the module")
        assert down.raw[:3] == bytes([0x3C, 0x4D, 23])  # ADDH ADDL (low 16 bits of the id) CHAN
        assert down.frame.device_id == SMOKE_ID and down.frame.type is FrameType.COMMAND
        assert down.frame.payload == b"\x01" and down.frame.encrypted and down.frame.fcnt == 0
        assert r.sim.sensors[SMOKE_ID].commands == ["silence"]
        await async_wait_for(lambda: r.driver.counters.get("command_acks") == 1, what="command ack")


async def test_downlinks_are_rate_limited(pty_link):
    async with rig(pty_link(), downlink_interval_s=1.0, downlink_queue_max_s=1.5) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        first = asyncio.create_task(r.driver.write(Command("smoke-2-1-401", "silence", True)))
        second = asyncio.create_task(r.driver.write(Command("smoke-2-1-401", "acknowledge", True)))
        await asyncio.sleep(0)
        with pytest.raises(CommandRejected, match="rate_limited"):
            await r.driver.write(Command("smoke-2-1-401", "silence", True))
        await asyncio.gather(first, second)
        await async_wait_for(lambda: len(r.sim.downlinks) == 2, what="both queued downlinks sent")
        assert [d.frame.payload for d in r.sim.downlinks] == [b"\x01", b"\x02"]
        with pytest.raises(CommandRejected, match="unsupported_target"):
            await r.driver.write(Command("gas-3-kitchen", "silence", True))


async def test_100k_random_bytes_never_crash_and_every_byte_is_accounted(pty_link):
    async with rig(pty_link()) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        rng = random.Random(2024)
        noise = bytes(rng.randrange(256) for _ in range(100_000))
        for i in range(0, len(noise), 4096):
            r.sim.send_raw(noise[i: i + 4096])
        await async_wait_for(lambda: r.driver.counters["bytes_in"] >= 100_000, timeout_s=30, what="noise delivered")
        r.sim.trigger(SMOKE_ID, "alarm")
        await async_wait_for(lambda: r.events("smoke-2-1-401", EventKind.ALARM), timeout_s=15, what="alarm after noise")
        d = r.driver.deframer
        await async_wait_for(lambda: d.pending == 0, timeout_s=10, what="buffer drained")
        assert d.frame_bytes + d.discarded_bytes == r.driver.counters["bytes_in"]
        assert sum(d.rejects.values()) > 0 and r.driver.health().state is DriverState.OK


async def test_port_unplug_and_replug_resumes_reception(pty_link):
    link = pty_link()
    async with rig(link, reopen_cap_s=0.5) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, what="port open")
        await r.sim.stop()
        link.unplug()
        await async_wait_for(lambda: r.driver.health().state is DriverState.DOWN, what="port lost")
        link.plug()
        await r.sim.start(link.b)
        await async_wait_for(lambda: r.driver.counters["port_opens"] >= 2, timeout_s=15, what="reopened")
        r.sim.trigger(SMOKE_ID, "alarm")
        await async_wait_for(lambda: r.events("smoke-2-1-401", EventKind.ALARM), what="alarm after replug")
        assert os.path.exists(link.a)


async def test_a_second_opener_is_refused_while_the_driver_owns_the_port(pty_link):
    """The driver takes the same exclusive lock as the Modbus link and every probe: a `gateway lora`
    probe run beside the daemon fails at open instead of splitting the module's frames between two readers."""
    import serial

    link = pty_link()
    async with rig(link) as r:
        await async_wait_for(lambda: r.driver.health().detail["port_open"], what="port open")
        with pytest.raises(serial.SerialException, match="exclusively lock"):
            serial.Serial(link.a, exclusive=True)
        r.sim.trigger(SMOKE_ID, "alarm")  # the refused opener took nothing from the driver
        await async_wait_for(lambda: r.events("smoke-2-1-401", EventKind.ALARM), what="alarm after the refused open")
