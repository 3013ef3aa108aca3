"""The outbox contract: seq across classes and restarts, store_id, fetch order, consumers, transact."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from gateway.clock import ManualClock
from gateway.errors import StoreError
from gateway.model import Reading, RecordClass
from gateway.store.outbox import Outbox
from tests.unit.store_support import ALL, drain, make_outbox, put_readings, reading

A, E, S, T = RecordClass.ALARM, RecordClass.EVENT, RecordClass.STATUS, RecordClass.TELEMETRY


async def test_seq_strictly_increases_across_classes_and_restart_and_is_never_reused(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    store_id = ob.store_id
    seqs = [await ob.put(A, "alarm.raised", "s1", clock.now(), {})]
    await put_readings(ob, clock, 3)
    seqs.append(await ob.put(E, "event.fault", "s1", clock.now(), {}))
    seqs.append(await ob.put(S, "status", "", clock.now(), {}))
    got = drain(ob)
    all_seqs = sorted([r.seq for r in got])
    assert all_seqs == list(range(1, 7)) and seqs == [1, 5, 6]
    await ob.ack("mqtt", all_seqs)  # every row delivered and deleted: only meta remembers the seqs
    assert drain(ob) == []
    await ob.close()

    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    assert ob.store_id == store_id
    assert await ob.put(A, "alarm.raised", "s1", clock.now(), {}) == 7
    await put_readings(ob, clock, 2)
    assert [r.seq for r in drain(ob)] == [7, 8, 9]
    assert ob.stats().last_seq == 9
    await ob.close()


async def test_new_database_gets_a_new_store_id(tmp_path):
    ids = []
    for name in ("a.db", "b.db"):
        ob = make_outbox(tmp_path / name)
        await ob.open()
        ids.append(ob.store_id)
        await ob.close()
    assert len(set(ids)) == 2 and all(len(i) == 36 for i in ids)


async def test_fetch_orders_by_class_then_seq_and_keeps_fifo_within_a_class(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    await put_readings(ob, clock, 3)                                  # seq 1..3
    await ob.put(S, "status", "", clock.now(), {"n": 1})               # 4
    await ob.put(E, "event.tamper", "m1", clock.now(), {"n": 1})       # 5
    await ob.put(A, "alarm.raised", "s1", clock.now(), {"n": 1})       # 6
    await ob.put(E, "event.tamper", "m1", clock.now(), {"n": 2})       # 7
    await ob.put(A, "alarm.raised", "s2", clock.now(), {"n": 2})       # 8
    got = drain(ob)
    assert [(r.cls, r.seq) for r in got] == [(A, 6), (A, 8), (E, 5), (E, 7), (S, 4), (T, 1), (T, 2), (T, 3)]
    assert [r.body["values"]["i"] for r in got if r.cls == T] == [0, 1, 2]
    assert [r.seq for r in ob.fetch("mqtt", 3)] == [6, 8, 5]
    assert [r.seq for r in ob.fetch("mqtt", 3, exclude=[6, 8, 5, 7])] == [4, 1, 2]
    assert [r.seq for r in ob.fetch("mqtt", 10, classes=[T])] == [1, 2, 3]
    await ob.close()


async def test_fetch_after_a_cursor_steps_over_lower_readings_only_and_keeps_the_floor(tmp_path):
    """The drain's cursor: readings above `after` only (committed and still in memory alike), alarms and
    events whatever their seq; the consumer's floor is moved by a fetch from the floor, never by one after a
    cursor (the rows between are still owed)."""
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    await put_readings(ob, clock, 6)                                   # seq 1..6, committed
    await ob.put(A, "alarm.raised", "s1", clock.now(), {"n": 1})       # 7
    ob.put_reading(reading(clock, i=8))                                # 8, in memory (write-behind)
    ob.behind.assign()
    assert [(r.cls, r.seq) for r in ob.fetch("mqtt", 100, after=4)] == [(A, 7), (T, 5), (T, 6), (T, 8)]
    assert [r.seq for r in ob.fetch("mqtt", 100, after=6)] == [7, 8]
    assert [r.seq for r in ob.fetch("mqtt", 100, exclude=[7], after=8)] == []
    assert [r.seq for r in ob.fetch("mqtt", 2, exclude=[1, 2], classes=[T])] == [3, 4]  # from the floor
    assert [r.seq for r in ob.fetch("mqtt", 100, classes=[T])] == [1, 2, 3, 4, 5, 6, 8]  # 1-2 still owed
    await ob.ack("mqtt", [1, 2])
    assert [r.seq for r in ob.fetch("mqtt", 100, classes=[T], after=3)] == [4, 5, 6, 8]
    assert [r.seq for r in ob.fetch("mqtt", 100, classes=[T])] == [3, 4, 5, 6, 8]  # acks awaiting their delete skipped
    assert ob._reader._floors["mqtt"] == 1  # acked, not yet deleted: still the first row with the bit
    await ob.flush()  # the batched delete
    ob.fetch("mqtt", 100, classes=[T], after=5)
    assert ob._reader._floors["mqtt"] == 1  # a fetch past a cursor never moves the floor
    assert [r.seq for r in ob.fetch("mqtt", 1, classes=[T])] == [3] and ob._reader._floors["mqtt"] == 3
    await ob.close()


async def test_a_floor_fetch_past_a_big_window_leaves_the_skipping_to_sqlite_with_the_same_answer(tmp_path, monkeypatch):
    """Past SKIP_IN_SQL held seqs a fetch from the floor hands them to SQLite (NOT IN json_each) instead of
    stepping over each in Python: same records, same floor (the first owed row, held or not)."""
    from gateway.store import reader

    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    await put_readings(ob, clock, 5000)
    held = set(range(1, 3001)) | {3003, 3005}
    await ob.ack("mqtt", range(3100, 3200))  # acks awaiting their delete: skipped too
    in_sql = [r.seq for r in ob.fetch("mqtt", 150, exclude=held, classes=[T])]
    monkeypatch.setattr(reader, "SKIP_IN_SQL", 10**9)
    in_python = [r.seq for r in ob.fetch("mqtt", 150, exclude=held, classes=[T])]
    assert in_sql == in_python == [3001, 3002, 3004, *range(3006, 3100), *range(3200, 3253)]
    assert [r.seq for r in ob.fetch("mqtt", 3, classes=[T])] == [1, 2, 3]  # the floor did not pass what was held
    await ob.close()


async def test_identical_readings_are_never_merged(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    r = Reading("pump-1", clock.now(), {"pressure_mpa": 0.31}, "modbus_rtu")
    ob.put_reading(r)
    ob.put_reading(r)
    await ob.flush()
    got = drain(ob)
    assert [x.seq for x in got] == [1, 2]
    assert got[0].stamp == got[1].stamp == r.stamp and got[0].body == got[1].body == {"values": {"pressure_mpa": 0.31}, "via": "modbus_rtu"}
    await ob.close()


async def test_readings_are_group_committed_within_the_interval_without_flush(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock, commit_interval_s=0.05)
    await ob.open()
    committed = asyncio.Event()
    ob.on_commit(lambda cls_min: committed.set() if cls_min == T else None)
    ob.put_reading(reading(clock))
    await asyncio.wait_for(committed.wait(), 10)
    assert [r.cls for r in drain(ob)] == [T]
    await ob.close()


async def test_on_commit_reports_the_most_urgent_class_committed(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    seen: list[RecordClass] = []
    ob.on_commit(seen.append)
    await ob.put(A, "alarm.raised", "s1", clock.now(), {})
    await asyncio.sleep(0)  # the callback is scheduled on the loop right after the commit
    await asyncio.sleep(0)
    assert seen == [A]
    await ob.close()


async def test_each_consumer_has_its_own_progress_and_rows_go_when_all_acked(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock, consumers={"mqtt": ALL, "gb26875": {A, E}})
    await ob.open()
    a = await ob.put(A, "alarm.raised", "s1", clock.now(), {})
    await put_readings(ob, clock, 2)
    assert [r.seq for r in ob.fetch("gb26875", 10)] == [a]  # gb26875 does not want telemetry
    await ob.ack("mqtt", [a, 2, 3])
    assert drain(ob) == []  # at once; the rows go at the next write-behind tick (batched deletions)
    await ob.flush()
    assert ob.stats().depth["telemetry"] == 0
    assert [r.seq for r in ob.fetch("gb26875", 10)] == [a] and ob.stats().depth["alarm"] == 1
    await ob.ack("gb26875", [a])
    assert ob.fetch("gb26875", 10) == []
    await ob.flush()
    assert ob.stats().depth["alarm"] == 0
    with pytest.raises(StoreError, match="unknown outbox consumer 'nobody'"):
        ob.fetch("nobody", 1)
    await ob.close()


async def test_removed_consumer_stops_holding_rows(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock, consumers={"mqtt": ALL, "gb26875": {A}})
    await ob.open()
    a = await ob.put(A, "alarm.raised", "s1", clock.now(), {})
    await ob.ack("mqtt", [a])
    await ob.close()
    ob = make_outbox(tmp_path / "o.db", clock, consumers={"mqtt": ALL})
    await ob.open()
    assert ob.stats().depth["alarm"] == 0
    await ob.close()


async def test_transact_is_atomic_with_its_records(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    await ob.transact(lambda c: c.execute("CREATE TABLE IF NOT EXISTS side (x)"))

    def fails(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO side VALUES (1)")
        ob.add_record(conn, A, "alarm.raised", "s1", clock.now(), {})
        raise RuntimeError("rule bug")

    with pytest.raises(RuntimeError, match="rule bug"):
        await ob.transact(fails)
    assert drain(ob) == [] and await ob.transact(lambda c: c.execute("SELECT count(*) FROM side").fetchone()[0]) == 0

    def works(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO side VALUES (2)")
        return ob.add_record(conn, A, "alarm.raised", "s1", clock.now(), {"id": "x"})

    seq = await ob.transact(works)
    assert [r.seq for r in drain(ob)] == [seq] == [1]  # the rolled-back seq was never seen: no hole
    await ob.close()


async def test_add_record_outside_transact_is_refused(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    with pytest.raises(StoreError, match="only valid inside Outbox.transact"):
        ob.add_record(sqlite3.connect(":memory:"), A, "alarm.raised", "s1", clock.now(), {})
    await ob.close()


async def test_close_commits_queued_readings(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock, commit_interval_s=10)
    await ob.open()
    for _ in range(5):
        ob.put_reading(reading(clock))
    await ob.close()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    assert len(drain(ob)) == 5
    assert ob.writer_alive()
    await ob.close()
    assert not ob.writer_alive()


async def test_stats_report_depth_ages_and_sizes(tmp_path):
    clock = ManualClock()
    ob: Outbox = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    await ob.put(A, "alarm.raised", "s1", clock.now(), {})
    await put_readings(ob, clock, 4)
    clock.advance(30)
    st = ob.stats()
    assert st.depth == {"alarm": 1, "event": 0, "status": 0, "telemetry": 4}
    assert st.oldest_age_s == {"alarm": 30.0, "telemetry": 30.0}
    assert st.last_seq == 5 and st.db_bytes > 0 and st.fault == "" and st.store_id == ob.store_id
    await ob.close()
