"""F2 for LoRa: 100,000 random and mutated frames through the live driver on a pty (E22 simulator end).

What must hold: the driver never crashes and its port stays open; every byte is accounted for
(frame bytes + discarded bytes + pending == bytes in), every rejection shows in health() counters, and a
real smoke alarm sent after the flood still arrives for the right device.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from drivers.base import DriverState
from drivers.lora.frame import FrameType, encode
from gateway.model import EventKind
from tests.integration.lora_rig import FLOW_ID, SMOKE_ID, codecs, rig  # noqa: F401 (codecs is a fixture)
from tests.support.wait import async_wait_for

pytestmark = pytest.mark.usefixtures("codecs")

FRAMES = int(os.environ.get("F2_FRAMES", "100000"))
BATCH = 2000


def flood(rng: random.Random, n: int) -> list[bytes]:
    """Half random bytes, half valid frames damaged by 1-3 byte changes (the realistic radio fault)."""
    out = []
    for i in range(n):
        if i % 2:
            out.append(rng.randbytes(rng.randint(1, 40)))
            continue
        raw = bytearray(encode(FLOW_ID, i & 0xFFFF, FrameType.REPORT, rng.randbytes(rng.randint(0, 20)), None) + b"\xb0")
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        out.append(bytes(raw))
    return out


def rejected(health) -> int:
    return sum(v for k, v in health.counters.items() if k.startswith("reject_"))


@pytest.mark.slow  # over 5 s (issue 16)
async def test_100k_malformed_frames_are_all_rejected_counted_and_an_alarm_still_arrives(pty_link):
    frames = flood(random.Random(1129), FRAMES)
    total = sum(map(len, frames))
    async with rig(pty_link()) as r:
        await async_wait_for(lambda: r.driver.health().state is not DriverState.DOWN, timeout_s=10, what="port open")
        base_in = r.driver.health().counters.get("bytes_in", 0)
        for at in range(0, len(frames), BATCH):
            r.sim.send_raw(b"".join(frames[at : at + BATCH]))
            # Back-pressure: the pty holds a few kB; keep the simulator's queue short.
            await async_wait_for(lambda: len(r.sim._out) < 64 * 1024, timeout_s=30, what="simulator drained")
        await async_wait_for(lambda: r.driver.health().counters.get("bytes_in", 0) - base_in >= total,
                             timeout_s=120, what="all flood bytes read by the driver")
        h = r.driver.health()
        d = r.driver.deframer
        assert h.detail["port_open"] and h.state is not DriverState.DOWN
        assert d.frame_bytes + d.discarded_bytes + d.pending == h.counters["bytes_in"]
        assert rejected(h) > FRAMES // 4 and d.discarded_bytes > total // 2
        assert not r.events("smoke-2-1-401", EventKind.ALARM)  # nothing invented from the noise
        print(f"\nF2 lora: frames_injected={FRAMES} bytes={total} rejected={rejected(h)} "
              f"discarded_bytes={d.discarded_bytes} accepted_frames={h.counters.get('frames', 0)}")
        await asyncio.sleep(0)
        r.sim.trigger(SMOKE_ID, "alarm")
        (alarm,) = await async_wait_for(lambda: r.events("smoke-2-1-401", EventKind.ALARM), timeout_s=15,
                                        what="smoke alarm after the flood")
        assert alarm.code == "smoke"
