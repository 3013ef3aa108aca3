"""`gateway lora listen` probe: frames heard through the simulator, with RSSI, keys or not."""

from __future__ import annotations

import asyncio

from drivers.lora.probe import listen
from drivers.lora.simulator import LoraSimulator
from tests.integration.lora_rig import FLOW_ID, SMOKE_ID, standard_devices


async def test_listen_yields_frames_with_rssi_without_keys(pty_link):
    link = pty_link()
    sim = LoraSimulator(time_scale=1000)
    for s in standard_devices()[3]:
        sim.add_sensor(s, heartbeats=False)
    await sim.start(link.b)
    heard: list[dict] = []

    async def collect() -> None:
        async for frame in listen(link.a):
            heard.append(frame)
            if {f["address"] for f in heard} == {SMOKE_ID, FLOW_ID}:
                return

    task = asyncio.create_task(collect())
    try:
        for _ in range(50):  # the sensors keep reporting until the listener has heard both (<= 10 s)
            sim.trigger(SMOKE_ID, "heartbeat")
            sim.trigger(FLOW_ID, "heartbeat")
            done, _ = await asyncio.wait({task}, timeout=0.2)
            if done:
                break
        await asyncio.wait_for(task, 1)
    finally:
        task.cancel()
        await sim.stop()
    by_id = {f["address"]: f for f in heard}
    assert by_id[SMOKE_ID]["rssi_dbm"] == -97 and by_id[SMOKE_ID]["verified"] is False
    assert by_id[FLOW_ID]["verified"] is True and by_id[FLOW_ID]["device_id"] == "0x0000f10e"
