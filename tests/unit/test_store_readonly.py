"""The CLI's read-only view of the outbox when the daemon is down."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.clock import ManualClock
from gateway.errors import StoreError
from gateway.model import RecordClass
from gateway.store.migrate import schema_files
from gateway.store.readonly import open_readonly
from tests.unit.store_support import make_outbox, put_readings


async def test_readonly_stats_match_the_daemons_and_write_nothing(tmp_path):
    clock = ManualClock()
    path = tmp_path / "o.db"
    ob = make_outbox(path, clock)
    await ob.open()
    await ob.put(RecordClass.ALARM, "alarm.raised", "s1", clock.now(), {})
    await put_readings(ob, clock, 7)
    live = ob.stats()
    await ob.close()
    before = path.stat().st_mtime_ns
    ro = open_readonly(str(path), clock)
    assert (ro.store_id, ro.depth, ro.oldest_age_s, ro.last_seq, ro.evicted) == (live.store_id, live.depth, live.oldest_age_s, 8, 0)
    wal = tmp_path / "o.db-wal"  # SQLite may leave an empty -wal/-shm pair behind a read-only open
    assert path.stat().st_mtime_ns == before and (not wal.exists() or wal.stat().st_size == 0)


def test_readonly_refuses_missing_and_newer_stores(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        open_readonly(str(tmp_path / "absent.db"))
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {schema_files()[-1][0] + 1}")
    with pytest.raises(StoreError, match="newer than this gateway knows"):
        open_readonly(str(path))
