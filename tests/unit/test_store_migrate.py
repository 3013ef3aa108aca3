"""Schema migrations: numbered files in order under PRAGMA user_version; a newer database is refused."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.errors import StoreError
from gateway.store.migrate import SCHEMA_DIR, migrate, schema_files, user_version
from tests.unit.store_support import make_outbox


def test_shipped_files_apply_in_number_order_and_set_user_version(tmp_path):
    conn = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    applied = migrate(conn)
    files = schema_files(SCHEMA_DIR)
    assert applied == [v for v, _ in files] and applied == sorted(applied) and applied[0] == 1
    assert user_version(conn) == files[-1][0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "record", "telemetry", "consumer", "name", "alarm"} <= tables
    assert migrate(conn) == []  # idempotent


def schema_dir(tmp_path, files: dict[str, str]):
    d = tmp_path / "schema"
    d.mkdir()
    for name, sql in files.items():
        (d / name).write_text(sql)
    return d, sqlite3.connect(tmp_path / "o.db", isolation_level=None)


def test_file_numbered_below_current_version_is_still_applied(tmp_path):
    d, conn = schema_dir(tmp_path, {"0001_a.sql": "CREATE TABLE a (x);", "0020_c.sql": "CREATE TABLE c (x);"})
    assert migrate(conn, d) == [1, 20]
    (d / "0010_b.sql").write_text("CREATE TABLE b (x);")  # another component's reserved range, added later
    assert migrate(conn, d) == [10]
    assert user_version(conn) == 20


def test_failing_file_rolls_back_whole_file_and_raises_store_error(tmp_path):
    d, conn = schema_dir(tmp_path, {"0001_a.sql": "CREATE TABLE a (x);", "0002_bad.sql": "CREATE TABLE b (x);\nTHIS IS NOT SQL;"})
    with pytest.raises(StoreError, match="0002_bad.sql"):
        migrate(conn, d)
    assert user_version(conn) == 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'b'").fetchone()[0] == 0


async def test_outbox_refuses_a_database_from_a_newer_gateway(tmp_path):
    path = tmp_path / "o.db"
    ob = make_outbox(path)
    await ob.open()
    await ob.close()
    newest = schema_files()[-1][0]
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {newest + 1}")
    newer = make_outbox(path)
    await newer.open()  # refused: DOWN with a reason, never an exception that stops the alarm core
    health = newer.health()
    assert health["state"] == "down" and health["reason"] == "newer_schema"
    assert f"schema version {newest + 1} is newer than this gateway knows ({newest})" in health["last_error"]
    await newer.close()
    with sqlite3.connect(path) as conn:  # refused, not touched
        assert conn.execute("PRAGMA user_version").fetchone()[0] == newest + 1


async def test_a_file_that_is_not_a_database_is_moved_aside_and_a_new_store_made(tmp_path):
    path = tmp_path / "o.db"
    junk = b"not a database at all, " * 200
    path.write_bytes(junk)
    ob = make_outbox(path)
    await ob.open()
    health = ob.health()
    assert health["state"] == "up" and health["corrupt_moved"] == 1
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("o.db.corrupt-")]
    assert [p.read_bytes() for p in moved] == [junk]  # kept for forensics
    [fault] = ob.fetch("mqtt", 10)
    assert fault.kind == "event.fault" and fault.body["code"] == "store_corrupt" and fault.seq == 1
    await ob.close()


async def test_a_first_release_database_with_a_backlog_is_upgraded_in_place_and_keeps_every_record(tmp_path):
    """Field update (issue 10): the first release shipped only 0001_outbox.sql. Its database, with
    records still queued, is migrated forward on open; nothing is lost, order and seqs are kept."""
    import shutil

    from gateway.model import RecordClass
    from gateway.clock import ManualClock
    from tests.unit.store_support import drain, put_readings

    first = tmp_path / "release1"
    first.mkdir()
    shutil.copy(SCHEMA_DIR / "0001_outbox.sql", first)
    path = tmp_path / "outbox.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, first) == [1]
    conn.close()

    clock = ManualClock()
    old = make_outbox(path, clock)  # the current code on the old file migrates it: check what it did
    await old.open()
    seq_alarm = await old.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"title": "烟感报警"})
    await put_readings(old, clock, 50)
    await old.flush()
    await old.close()
    # Back to exactly what release 1 had on disk (its tables, its user_version), records still queued.
    conn = sqlite3.connect(path, isolation_level=None)
    for table in ("alarm", "alarm_history", "alarm_notice", "uplink_nonce"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("DELETE FROM schema_migration WHERE version > 1")
    conn.execute("PRAGMA user_version = 1")
    conn.close()

    new = make_outbox(path, clock)
    await new.open()
    try:
        conn = sqlite3.connect(path)
        assert user_version(conn) == schema_files(SCHEMA_DIR)[-1][0]
        assert {"alarm", "uplink_nonce"} <= {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        conn.close()
        records = drain(new)
        assert records[0].seq == seq_alarm and records[0].cls == RecordClass.ALARM
        tele = [r.seq for r in records if r.cls == RecordClass.TELEMETRY]
        assert len(tele) == 50 and tele == sorted(tele)
        assert await new.put(RecordClass.EVENT, "event.test", "x", clock.now(), {}) > max(tele)  # seq never reused
    finally:
        await new.close()
