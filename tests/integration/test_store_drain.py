"""A consumer draining while drivers keep producing (real writer thread, real reader connection):
every committed seq is fetched, in order within its class, alarms ahead of telemetry, none lost."""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.clock import ManualClock
from gateway.model import RecordClass
from tests.unit.store_support import ALL, make_outbox, reading

A, T = RecordClass.ALARM, RecordClass.TELEMETRY


@pytest.mark.timeout(60)
async def test_concurrent_ingest_and_drain_deliver_every_seq_in_class_order(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock, consumers={"mqtt": ALL, "gb26875": {A}}, commit_interval_s=0.01)
    await ob.open()
    rng = random.Random(7)
    alarms: list[int] = []
    done = asyncio.Event()

    async def produce() -> None:
        for i in range(4000):
            ob.put_reading(reading(clock, i=i))
            if i % 200 == 0:
                alarms.append(await ob.put(A, "alarm.raised", "s1", clock.now(), {"i": i}))
            if i % 50 == 0:
                await asyncio.sleep(0)
        await ob.flush()
        done.set()

    delivered: list[tuple[RecordClass, int]] = []
    in_flight: set[int] = set()

    async def consume() -> None:
        while True:
            batch = ob.fetch("mqtt", rng.randint(1, 300), exclude=in_flight)
            if not batch:
                if done.is_set() and not ob.fetch("mqtt", 1):
                    return
                await asyncio.sleep(0.005)
                continue
            in_flight.update(r.seq for r in batch)
            delivered.extend((r.cls, r.seq) for r in batch)
            await ob.ack("mqtt", [r.seq for r in batch])
            in_flight.difference_update(r.seq for r in batch)

    await asyncio.gather(produce(), consume())
    seqs = [s for _, s in delivered]
    assert len(seqs) == len(set(seqs)) == 4000 + len(alarms)  # each exactly once
    assert sorted(seqs) == list(range(1, len(seqs) + 1))  # no hole: nothing lost
    tele = [s for c, s in delivered if c == T]
    assert tele == sorted(tele) and [s for c, s in delivered if c == A] == alarms
    # gb26875 wants alarms only and has acked none: they stay for it, telemetry is gone (once the
    # batched deletions of the next write-behind tick have run)
    await ob.flush()
    assert [r.seq for r in ob.fetch("gb26875", 1000)] == alarms and ob.stats().depth["telemetry"] == 0
    await ob.close()
