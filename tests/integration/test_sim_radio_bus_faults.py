"""The LoRa module simulator's and the Modbus RTU simulator's fault knobs, each injected once and read back
from the wire with the product's own deframers (drivers/lora/frame.py, drivers/modbus/framing.py) on the
host end of a real pty: what each fault puts on the line is what its docstring promises, nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial

from drivers.lora.frame import Deframer, Frame
from drivers.lora.simsensors import SimSensor
from drivers.lora.simulator import FAULTS, RESET_SILENT_S, LoraSimulator
from drivers.modbus.framing import Request, RtuFrame, RtuParser, parse_reply, rtu_adu
from drivers.modbus.simbank import SlaveSim, load_profile
from drivers.modbus.simulator import ModbusSimulator
from gateway.errors import FrameError, ModbusDeviceError
from tests.support.wait import async_wait_for

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(16))
DEV = 0x1A2B3C4D


class Host:
    """The gateway's end of the pty: everything read so far, deframed."""

    def __init__(self, port: serial.Serial, deframer: Deframer) -> None:
        self.port, self.deframer = port, deframer
        self.frames: list[Frame] = []
        self.rejects: list[str] = []

    def poll(self) -> int:
        for item in self.deframer.feed(self.port.read(4096)):
            if isinstance(item, Frame):
                self.frames.append(item)
            else:
                self.rejects.append(item.reason)
        return len(self.frames)


@contextlib.asynccontextmanager
async def lora(tmp_path) -> AsyncIterator[tuple[LoraSimulator, SimSensor, Host]]:
    sim = LoraSimulator(air_time=False, seed=3)
    path = str(tmp_path / "lora")
    await sim.start(path, create_pty=True)
    # Added after start with heartbeats off: every frame on the line is one the test asked for.
    sensor = sim.add_sensor(SimSensor(DEV, "smoke", key=KEY, rssi_dbm=-80), heartbeats=False)
    with serial.Serial(path, 9600, timeout=0) as port:
        try:
            yield sim, sensor, Host(port, Deframer({DEV: KEY}, rssi=True))
        finally:
            await asyncio.wait_for(sim.stop(), 10)


async def on_air(sim: LoraSimulator) -> None:
    """Every triggered frame has been transmitted (faults are applied when a transmission runs)."""
    await async_wait_for(lambda: not sim._tasks, 5, what="transmissions done")  # noqa: SLF001 - the sim's own tasks


async def test_an_unfaulted_report_arrives_once_verified(tmp_path):
    async with lora(tmp_path) as (sim, _sensor, host):
        sim.trigger(DEV, "alarm")
        await async_wait_for(lambda: host.poll() == 1, 5, what="one frame")
        assert host.frames[0].verified and host.frames[0].rssi_dbm == -80 and host.rejects == []


async def test_bit_flip_is_caught_by_the_mic(tmp_path):
    async with lora(tmp_path) as (sim, _sensor, host):
        sim.set_fault("bit_flip", DEV)
        sim.trigger(DEV, "alarm")
        sim.trigger(DEV, "heartbeat")  # the one-shot fault is spent: this one is intact
        await async_wait_for(lambda: host.poll() == 1 and "bad_mic" in host.rejects, 5, what="bad_mic, then a frame")
        assert host.frames[0].fcnt == 1  # the flipped alarm (fcnt 0) never passed as a frame


async def test_duplicate_sends_the_same_frame_twice_and_replay_resends_the_first(tmp_path):
    async with lora(tmp_path) as (sim, _sensor, host):
        sim.set_fault("duplicate")
        sim.trigger(DEV, "heartbeat")
        await async_wait_for(lambda: host.poll() == 2, 5, what="the frame and its duplicate")
        assert host.frames[0] == host.frames[1]
        sim.trigger(DEV, "heartbeat")
        await on_air(sim)
        sim.set_fault("replay", DEV)
        sim.trigger(DEV, "alarm")
        await async_wait_for(lambda: host.poll() == 5, 5, what="two more frames and the replayed first one")
        assert [f.fcnt for f in host.frames] == [0, 0, 1, 2, 0]  # deframing accepts it: replay.py must refuse it


async def test_truncated_frame_is_judged_when_the_line_goes_quiet(tmp_path):
    async with lora(tmp_path) as (sim, _sensor, host):
        sim.set_fault("truncated")
        sim.trigger(DEV, "alarm")
        await async_wait_for(lambda: host.port.in_waiting == 0 and host.deframer.pending > 0 or host.poll() > 0, 5,
                             what="a partial frame held")
        host.poll()
        assert host.frames == [] and host.deframer.pending > 0
        assert {e.reason for e in host.deframer.expire() if isinstance(e, FrameError)} >= {"truncated"}


async def test_noise_is_rejected_and_never_a_frame(tmp_path):
    async with lora(tmp_path) as (sim, _sensor, host):
        sim.set_fault("noise")
        await async_wait_for(lambda: (host.poll(), host.deframer.discarded_bytes)[1] >= 16, 5, what="noise bytes read")
        host.deframer.expire()
        assert host.frames == []


async def test_a_module_reset_is_silent_for_its_self_check_then_works(tmp_path):
    async with lora(tmp_path) as (sim, _sensor, host):
        sim.set_fault("module_reset")
        sim.trigger(DEV, "alarm")  # during the self-check: lost, like a real module's
        t0 = time.monotonic()
        await async_wait_for(lambda: time.monotonic() - t0 > RESET_SILENT_S, 5, what="the self-check time")
        sim.trigger(DEV, "heartbeat")
        await async_wait_for(lambda: host.poll() == 1, 5, what="a frame after the reset")
        assert host.frames[0].fcnt == 1


async def test_a_wrong_channel_hears_nothing_until_cleared_and_muted_sensors_send_nothing(tmp_path):
    async with lora(tmp_path) as (sim, _sensor, host):
        sim.set_fault("wrong_channel")
        sim.trigger(DEV, "alarm")
        await on_air(sim)
        sim.muted.add(DEV)
        sim.clear_fault("wrong_channel")
        sim.trigger(DEV, "alarm")  # muted: nothing
        sim.muted.discard(DEV)
        sim.trigger(DEV, "heartbeat")
        await async_wait_for(lambda: host.poll() == 1, 5, what="the only frame that could be heard")
        assert [f.fcnt for f in host.frames] == [2]  # fcnt 0 lost on the wrong channel, fcnt 1 never sent (muted)
        with pytest.raises(ValueError, match="unknown fault"):
            sim.set_fault("lightning")
        assert set(FAULTS) == {"truncated", "bit_flip", "duplicate", "replay", "noise", "module_reset", "wrong_channel"}


# ---- Modbus RTU simulator (simbank.Fault) ---------------------------------------------------------------------

READ = Request(unit=1, function=3, address=0, count=2)


@contextlib.asynccontextmanager
async def bus(tmp_path):
    kind, profile = load_profile(ROOT / "config/profiles/hydrant_monitor.toml")
    sim = ModbusSimulator([SlaveSim(1, kind, profile)])
    path = str(tmp_path / "rs485")
    await sim.start_rtu(path, create_pty=True)
    with serial.Serial(path, 9600, timeout=0) as port:
        try:
            yield sim, port
        finally:
            await sim.stop()


async def ask(port: serial.Serial, req: Request = READ, wait_s: float = 2.0) -> tuple[list, float]:
    """Write one request; return what the parser made of the reply (frames and errors) and its delay."""
    parser, got = RtuParser(), []
    port.write(rtu_adu(req.unit, req.pdu()))
    t0 = time.monotonic()
    deadline = t0 + wait_s
    while time.monotonic() < deadline and not any(isinstance(g, RtuFrame) for g in got):
        got += parser.feed(port.read(512))
        await asyncio.sleep(0.01)
    return got + ([FrameError("incomplete", bytes(parser.buf))] if parser.buf else []), time.monotonic() - t0


async def test_modbus_faults_each_show_on_the_wire_as_documented(tmp_path):
    async with bus(tmp_path) as (sim, port):
        (reply,), _ = await ask(port)
        assert isinstance(reply, RtuFrame) and reply.unit == 1 and len(parse_reply(READ, reply.pdu)) == 2

        sim.set_fault(1, exception=2)
        (reply,), _ = await ask(port)
        with pytest.raises(ModbusDeviceError) as exc:
            parse_reply(READ, reply.pdu)
        assert exc.value.exception_code == 2

        sim.set_fault(1, wrong_unit=True)
        (reply,), _ = await ask(port)
        assert reply.unit == 2  # the reply names unit id + 1: the driver must refuse it

        sim.set_fault(1, bad_crc=True)
        got, _ = await ask(port, wait_s=0.5)
        assert not any(isinstance(g, RtuFrame) for g in got) and "bad_crc" in [getattr(g, "reason", "") for g in got]

        sim.set_fault(1, truncated=True)
        got, _ = await ask(port, wait_s=0.5)
        assert not any(isinstance(g, RtuFrame) for g in got) and got  # half a reply, never a frame

        sim.set_fault(1, silent=True)
        got, _ = await ask(port, wait_s=0.5)
        assert got == []

        sim.set_fault(1, late_ms=300)
        (reply,), delay = await ask(port)
        assert isinstance(reply, RtuFrame) and delay >= 0.3

        sim.clear_faults()
        (reply,), _ = await ask(port)
        assert isinstance(reply, RtuFrame) and reply.unit == 1
