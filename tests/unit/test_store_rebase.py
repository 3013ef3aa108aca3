"""Stamps taken before the clock synced are re-based from their monotonic stamp once it syncs."""

from __future__ import annotations

import asyncio

from gateway.clock import ManualClock
from gateway.model import Reading, RecordClass, Stamp
from tests.unit.store_support import drain, make_outbox, put_readings

A, T = RecordClass.ALARM, RecordClass.TELEMETRY
FAKE_HWCLOCK_BEHIND_S = 3 * 86400  # the Pi booted with fake-hwclock's save from 3 days ago


def unsynced_clock() -> ManualClock:
    return ManualClock(wall_s=1_790_000_000.0 - FAKE_HWCLOCK_BEHIND_S, synced=False)


async def test_unsynced_records_of_this_boot_are_rebased_in_the_database(tmp_path):
    clock = unsynced_clock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    alarm_stamp = clock.now()
    await ob.put(A, "alarm.raised", "s1", alarm_stamp, {})
    clock.advance(10)
    await put_readings(ob, clock, 3, step_s=1)
    other_boot = Stamp(1_000.0, "previous-boot", 5, False)
    ob.put_reading(Reading("pump-1", other_boot, {"i": 99}, "modbus_rtu"))
    await ob.flush()
    clock.advance(5)
    clock.step_wall(FAKE_HWCLOCK_BEHIND_S, synced=True)  # NTP steps the wall clock; monotonic does not move
    assert await ob.rebase_unsynced() == 4
    await ob.close()

    ob = make_outbox(tmp_path / "o.db", ManualClock(wall_s=2e9, boot_id="next-boot"))  # after a reboot
    await ob.open()
    got = drain(ob)
    alarm = got[0]
    assert alarm.stamp.clock_synced and alarm.stamp.wall_s == alarm_stamp.wall_s + FAKE_HWCLOCK_BEHIND_S
    assert alarm.stamp.mono_ns == alarm_stamp.mono_ns
    tele = [r for r in got if r.cls == T]
    walls = [r.stamp.wall_s - FAKE_HWCLOCK_BEHIND_S for r in tele[:3]]
    assert all(r.stamp.clock_synced for r in tele[:3]) and walls == [1_790_000_000.0 - FAKE_HWCLOCK_BEHIND_S + 10 + i for i in range(3)]
    assert tele[3].stamp == other_boot  # another boot's monotonic clock means nothing now: left as taken
    await ob.close()


async def test_the_writer_rebases_by_itself_when_the_clock_syncs(tmp_path):
    clock = unsynced_clock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    await put_readings(ob, clock, 2)
    clock.step_wall(FAKE_HWCLOCK_BEHIND_S, synced=True)
    deadline = asyncio.get_running_loop().time() + 10
    while ob._writer.stats.rebased < 2:  # checked about once a second by the writer
        assert asyncio.get_running_loop().time() < deadline, "writer did not re-base within 10 s"
        await asyncio.sleep(0.05)
    await ob.close()


async def test_fetch_rebases_on_the_fly_before_the_database_is_rewritten(tmp_path):
    clock = unsynced_clock()
    ob = make_outbox(tmp_path / "o.db", clock)
    await ob.open()
    taken = clock.now()
    await ob.put(A, "alarm.raised", "s1", taken, {})
    assert drain(ob)[0].stamp == taken  # not synced yet: sent as taken, clock_synced=false
    clock.step_wall(FAKE_HWCLOCK_BEHIND_S, synced=True)
    fixed = drain(ob)[0].stamp
    assert fixed.clock_synced and fixed.wall_s == taken.wall_s + FAKE_HWCLOCK_BEHIND_S
    await ob.close()
