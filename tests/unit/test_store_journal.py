"""The outbox's in-memory journal while the store is DOWN (issue 15 item 2): its bound and eviction
order, readings apart, and database files created 0640 whatever the umask (issue 16)."""

from __future__ import annotations

import os

from gateway.clock import ManualClock
from gateway.model import RecordClass
from gateway.store.journal import Entry, Journal
from tests.unit.store_support import make_outbox, reading

A, E, S = RecordClass.ALARM, RecordClass.EVENT, RecordClass.STATUS
CLOCK = ManualClock()


def entry(cls: RecordClass, n: int) -> Entry:
    return Entry(cls, f"{cls.name.lower()}.x", "d", CLOCK.now(), {"n": n}, n)


def test_full_journal_gives_up_status_then_events_never_an_alarm_for_less():
    j = Journal(max_records=4)
    for i, cls in enumerate((S, E, A, E)):
        assert j.add(entry(cls, i)) is None
    assert j.add(entry(A, 4)).cls == S  # the oldest status goes first
    assert j.add(entry(A, 5)).body["n"] == 1  # then the oldest event
    assert j.add(entry(E, 6)).body["n"] == 3  # an event pushes out an older event
    assert j.add(entry(S, 7)).body["n"] == 7  # a status never pushes out an event: refused
    assert [e.body["n"] for e in j.records] == [2, 4, 5, 6]
    j.add(entry(A, 8))  # pushes out event 6
    assert j.add(entry(A, 9)).body["n"] == 9  # full of alarms: the newest is refused, counted
    assert [e.cls for e in j.records] == [A, A, A, A] and j.evicted == {"alarm": 1, "event": 3, "status": 2, "telemetry": 0}


def test_records_keep_arrival_order_even_when_one_fails_late():
    j = Journal()
    for n in (1, 3, 2, 4):
        j.add(entry(E, n))
    assert [e.n for e in j.records] == [1, 2, 3, 4]


def test_reading_buffer_drops_the_oldest_and_counts():
    j = Journal(max_readings=3)
    for i in range(5):
        j.add_reading(reading(CLOCK, i=i))
    assert [r.values["i"] for r in j.readings] == [2, 3, 4] and j.readings_dropped == 2


async def test_database_files_are_0640_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        ob = make_outbox(tmp_path / "o.db")
        await ob.open()
        await ob.put(A, "alarm.raised", "s", CLOCK.now(), {})
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir() if p.name.startswith("o.db")}
        await ob.close()
    finally:
        os.umask(old)
    assert modes == {"o.db": "0o640", "o.db-wal": "0o640", "o.db-shm": "0o640", "o.db.ballast": "0o600"}


async def test_an_existing_world_readable_database_is_narrowed(tmp_path):
    ob = make_outbox(tmp_path / "o.db")
    await ob.open()
    await ob.close()
    os.chmod(tmp_path / "o.db", 0o644)
    ob = make_outbox(tmp_path / "o.db")
    await ob.open()
    assert oct((tmp_path / "o.db").stat().st_mode & 0o777) == "0o640"
    await ob.close()
