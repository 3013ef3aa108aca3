"""Bounds: oldest telemetry evicted first and counted, alarms and events never; TTL; bytes; purge."""

from __future__ import annotations

from gateway.clock import ManualClock
from gateway.model import RecordClass
from tests.unit.store_support import drain, make_outbox, put_readings

A, E, T = RecordClass.ALARM, RecordClass.EVENT, RecordClass.TELEMETRY


async def test_row_cap_evicts_oldest_telemetry_first_and_never_alarms(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock, telemetry_max_rows=1000)
    await ob.open()
    alarm = await ob.put(A, "alarm.raised", "s1", clock.now(), {})
    event = await ob.put(E, "event.tamper", "m1", clock.now(), {})
    await put_readings(ob, clock, 800)
    await put_readings(ob, clock, 700)  # 1,500 readings against a cap of 1,000
    got = drain(ob)
    tele = [r.body["values"]["i"] for r in got if r.cls == T]
    assert [r.seq for r in got if r.cls != T] == [alarm, event]
    # the 500 oldest went: the first 500 of the first batch; order of the rest untouched
    assert len(tele) == 1000 and tele[:300] == list(range(500, 800)) and tele[300:] == list(range(700))
    st = ob.stats()
    assert st.evicted == 500 and st.depth["telemetry"] == 1000
    await ob.close()
    ob = make_outbox(tmp_path / "o.db", clock, telemetry_max_rows=1000)
    await ob.open()
    assert ob.stats().evicted == 500  # counted since the store was created
    await ob.close()


async def test_byte_cap_on_db_and_wal_evicts_oldest_telemetry(tmp_path):
    clock = ManualClock()
    max_bytes = 1024 * 1024
    ob = make_outbox(tmp_path / "o.db", clock, max_bytes=max_bytes)
    await ob.open()
    alarm = await ob.put(A, "alarm.raised", "s1", clock.now(), {"pad": "x" * 500})
    for _ in range(12):
        await put_readings(ob, clock, 4000)  # ~60 bytes each: ~2.9 MB offered to a 1 MiB store
        await ob.maintain()  # the deliberate checkpoint keeps the WAL within its share
    got = drain(ob, limit=1_000_000)
    st = ob.stats()
    assert st.evicted > 0 and got[0].seq == alarm
    tele = [r.seq for r in got if r.cls == T]
    assert tele == sorted(tele) and tele[-1] == st.last_seq  # the newest kept, the oldest gone
    assert tele[0] == st.evicted + 2  # exactly the oldest `evicted` readings are missing
    assert st.db_bytes <= max_bytes
    await ob.close()


async def test_ttl_evicts_telemetry_older_than_the_ttl_with_an_injected_clock(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock, telemetry_ttl_s=3600)
    await ob.open()
    await put_readings(ob, clock, 10, step_s=60)   # read over 10 minutes
    old_alarm = await ob.put(A, "alarm.raised", "s1", clock.now(), {})
    clock.advance(3600 - 6 * 60 + 1)              # read at t=0..540 s, now t=3841 s: the first 5 are past the TTL
    await ob.maintain()
    got = drain(ob)
    assert [r.body["values"]["i"] for r in got if r.cls == T] == [5, 6, 7, 8, 9]
    assert [r.seq for r in got if r.cls == A] == [old_alarm]
    clock.advance(30 * 86400)                      # alarms never expire
    await ob.maintain()
    assert [r.seq for r in drain(ob)] == [old_alarm] and ob.stats().evicted == 10
    await ob.close()


async def test_purge_drops_only_old_telemetry(tmp_path):
    clock = ManualClock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    await ob.put(E, "event.tamper", "m1", clock.now(), {})
    await put_readings(ob, clock, 4)
    clock.advance(7200)
    await put_readings(ob, clock, 3)
    assert await ob.purge_telemetry(3600) == 4
    got = drain(ob)
    assert [r.cls for r in got] == [E, T, T, T] and ob.stats().evicted == 4
    await ob.close()
