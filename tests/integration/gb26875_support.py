"""Parts for the GB 26875 uplink tests: a real Outbox with both consumers, the simulated centre, a client."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import msgspec
import structlog

from gateway.clock import Clock
from gateway.config.schema import Store
from gateway.model import Device, DeviceType, Location, RecordClass
from gateway.store.outbox import Outbox
from gateway.uplink.gb26875.client import CLASSES, GB26875Client
from gateway.uplink.gb26875.config import GB26875Section
from gateway.uplink.gb26875.objects import PartBit, TypeFlag
from gateway.uplink.gb26875.simulator import Centre
from tests.support.wait import async_wait_for

SMOKES = [Device(f"smoke-{i}", "smoke", DeviceType.SMOKE, "lora", i, Location("2", "1", f"{400 + i}")) for i in range(1, 21)]
DEVICES = {d.id: d for d in SMOKES} | {"relay": Device("relay", "guard_relay_box", DeviceType.RELAY_BOX, "rs485", 9)}


def cfg(port: int, **over: Any) -> GB26875Section:
    base = {"enabled": True, "host": "127.0.0.1", "port": port, "source_address": 0x0000_0000_0A01,
            "destination_address": 0x010203040506, "ack_timeout_s": 0.5, "retries": 2, "heartbeat_period_s": 30,
            "reconnect_base_s": 0.1, "reconnect_cap_s": 1.0}
    return msgspec.convert(base | over, GB26875Section)


async def open_outbox(tmp_path: Path, clock: Any) -> Outbox:
    (tmp_path / "state").mkdir(exist_ok=True)
    store = Store(path=str(tmp_path / "state" / "outbox.db"), commit_interval_s=0.05, ballast_bytes=0)
    ob = Outbox(store, clock, structlog.get_logger(), {"mqtt": set(RecordClass), "gb26875": set(CLASSES)})
    await ob.open()
    return ob


async def smoke_alarm(ob: Outbox, clock: Clock, device: str = "smoke-1") -> int:
    body = {"kind": "alarm", "code": "smoke", "via": "lora", "type": "smoke"}
    return await ob.put(RecordClass.EVENT, "event.alarm", device, clock.now(), body)


def fire_alarm_parts(centre: Centre) -> list[int]:
    """Part addresses the centre saw in part-state frames with the fire-alarm bit (retransmissions included)."""
    return [o.part_addr for r in centre.data_frames(TypeFlag.PART_STATE) for o in r.objects if o.state & PartBit.FIRE_ALARM]


@contextlib.asynccontextmanager
async def running(client: GB26875Client):
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def pending(ob: Outbox, consumer: str = "gb26875") -> list[int]:
    return [r.seq for r in ob.fetch(consumer, 1000)]


def make_client(port: int, ob: Outbox, clock: Clock, **over: Any) -> GB26875Client:
    return GB26875Client(cfg(port, **over), ob, DEVICES, clock, structlog.get_logger())


@contextlib.asynccontextmanager
async def connected(tmp_path: Path, **over: Any):
    """A real Outbox, a confirming centre and a client already connected to it; torn down afterwards."""
    clock = Clock("assume_synced")
    ob = await open_outbox(tmp_path, clock)
    centre = await Centre().start()
    client = make_client(centre.port, ob, clock, **over)
    try:
        async with running(client):
            await async_wait_for(lambda: client.state == "connected", what="connected")
            yield clock, ob, centre, client
    finally:
        await centre.stop()
        await ob.close()
