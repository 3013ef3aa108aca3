#!/usr/bin/env python3
"""Bench the GB 26875 uplink against the simulated centre on 127.0.0.1 with a real Outbox.

Measures: fire-alarm latency (outbox commit returned -> part-state frame at the centre), p50/p95/max
over N alarms one at a time; and backlog drain rate (records/s) for M queued alarms after the centre
was down. Usage: .venv/bin/python scripts/bench_gb26875.py [--alarms 200] [--backlog 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test parts (outbox, config) live in tests/

from gateway.clock import Clock  # noqa: E402
from gateway.model import Device, DeviceType, RecordClass  # noqa: E402
from gateway.uplink.gb26875.client import GB26875Client  # noqa: E402
from gateway.uplink.gb26875.objects import PartBit, TypeFlag  # noqa: E402
from gateway.uplink.gb26875.simulator import Centre  # noqa: E402
from tests.integration.gb26875_support import cfg, open_outbox, running  # noqa: E402


def fire_frames(centre: Centre) -> int:
    return sum(1 for r in centre.data_frames(TypeFlag.PART_STATE) for o in r.objects if o.state & PartBit.FIRE_ALARM)


async def wait(cond, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.001)


async def bench(alarms: int, backlog: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    clock = Clock("assume_synced")
    n = max(alarms, backlog)
    devices = {f"s{i}": Device(f"s{i}", "smoke", DeviceType.SMOKE, "lora", i) for i in range(n)}
    body = {"kind": "alarm", "code": "smoke"}
    with tempfile.TemporaryDirectory() as tmp:
        ob = await open_outbox(Path(tmp), clock)
        centre = await Centre().start()
        client = GB26875Client(cfg(centre.port), ob, devices, clock, structlog.get_logger())
        async with running(client):
            await wait(lambda: client.state == "connected")
            lat = []
            for i in range(alarms):
                before = fire_frames(centre)
                await ob.put(RecordClass.EVENT, "event.alarm", f"s{i}", clock.now(), body)
                t0 = time.monotonic()
                await wait(lambda: fire_frames(centre) > before)
                lat.append((time.monotonic() - t0) * 1000)
            lat.sort()
            print(f"alarm latency over {alarms}: p50 {statistics.median(lat):.1f} ms, "
                  f"p95 {lat[int(0.95 * len(lat)) - 1]:.1f} ms, max {lat[-1]:.1f} ms")
            await centre.stop()
            for i in range(backlog):
                await ob.put(RecordClass.EVENT, "event.alarm_cleared", f"s{i}", clock.now(), {"kind": "alarm_cleared", "code": "smoke"})
            centre = await Centre(port=centre.port).start()
            t0 = time.monotonic()
            await wait(lambda: not ob.fetch("gb26875", 1), timeout_s=300)
            dt = time.monotonic() - t0
            print(f"backlog of {backlog} records after an outage drained in {dt:.2f} s ({backlog / dt:.0f} records/s, "
                  f"stop-and-wait, one frame in flight)")
        await centre.stop()
        await ob.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--alarms", type=int, default=200)
    ap.add_argument("--backlog", type=int, default=1000)
    a = ap.parse_args()
    asyncio.run(bench(a.alarms, a.backlog))
