"""Write-behind of telemetry (issue 17): readings acknowledged in time are never written, the others
are written by the tick after commit_interval_s / 2; seqs are given at ingest from reserved blocks; a
clean close gives the unused block back, an unclean stop is skipped and explained by store.seq_gap."""

from __future__ import annotations

import asyncio
import sqlite3

from gateway.clock import ManualClock
from gateway.model import RecordClass
from tests.unit.store_support import make_outbox, reading

A, S, T = RecordClass.ALARM, RecordClass.STATUS, RecordClass.TELEMETRY


def rows(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    finally:
        conn.close()


async def wait_for(cond, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_readings_acknowledged_before_their_commit_is_due_are_never_written(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock, commit_interval_s=0.2)
    await ob.open()
    for i in range(50):
        ob.put_reading(reading(clock, i=i))
    got = ob.fetch("mqtt", 100)
    assert [r.seq for r in got] == list(range(1, 51))  # seq at ingest, published from memory
    await ob.ack("mqtt", [r.seq for r in got])
    await asyncio.sleep(0.5)  # two ticks
    assert rows(tmp_path / "o.db") == 0 and ob.health()["telemetry_written_behind"] == 0
    await ob.close()


async def test_unacknowledged_readings_are_written_within_the_commit_interval(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock, commit_interval_s=0.2)
    await ob.open()
    for i in range(30):
        ob.put_reading(reading(clock, i=i))
    await wait_for(lambda: rows(tmp_path / "o.db") == 30, timeout_s=2)
    assert [r.body["values"]["i"] for r in ob.fetch("mqtt", 100)] == list(range(30))  # once each
    await ob.close()


async def test_clean_close_gives_the_block_back_and_a_crash_is_skipped_and_explained(tmp_path):
    clock = ManualClock()
    path = tmp_path / "o.db"
    ob = make_outbox(path, clock)
    await ob.open()
    for i in range(5):
        ob.put_reading(reading(clock, i=i))
    await ob.close()
    ob = make_outbox(path, clock)
    await ob.open()
    assert await ob.put(A, "alarm.raised", "s", clock.now(), {}) == 6  # no hole after a clean close
    ob.put_reading(reading(clock))
    await ob.flush()
    reserved = ob.alloc.limit
    # The process dies here (no close): the next open must start above the whole reserved block.
    again = make_outbox(path, clock)
    await again.open()
    gap = [r for r in again.fetch("mqtt", 100) if r.kind == "store.seq_gap"]
    assert len(gap) == 1 and gap[0].body["up_to_seq"] == reserved and gap[0].seq == reserved + 1
    assert await again.put(A, "alarm.raised", "s", clock.now(), {}) == reserved + 2
    await again.close()
    ob._writer.join(0)  # the abandoned writer thread is a daemon thread; nothing to clean up
