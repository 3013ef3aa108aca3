"""Disk full on a real small filesystem (tmpfs, 8 MiB): the ballast is released, alarms keep committing,
telemetry is rejected and counted, and the store recovers when space returns. Needs root to mount:
without it the test fails (it must not silently skip)."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from gateway.clock import ManualClock
from gateway.model import RecordClass
from tests.unit.store_support import drain, make_outbox, put_readings, reading

A, E, T = RecordClass.ALARM, RecordClass.EVENT, RecordClass.TELEMETRY
BALLAST_BYTES = 1024 * 1024
# With the disk full the writer recycles the WAL, so each 2 kB alarm grows the database by ~4 kB:
# 1 MiB of ballast carries ~200 of them (plain alarms of ~300 bytes: thousands).
ALARMS_ON_BALLAST = 150


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert os.geteuid() == 0, "the disk-full test mounts a tmpfs and needs root"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(path) -> None:
    """Take every free block of the filesystem (what a runaway log file does on a Pi)."""
    with open(path, "wb") as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.mark.timeout(60)
async def test_disk_full_keeps_alarms_rejects_telemetry_and_recovers(small_fs):
    clock = ManualClock()
    ob = make_outbox(small_fs / "o.db", clock, ballast_bytes=BALLAST_BYTES, max_bytes=64 * 1024 * 1024)
    await ob.open()
    ballast = small_fs / "o.db.ballast"
    assert ballast.stat().st_size == BALLAST_BYTES and ob.stats().fault == ""
    await put_readings(ob, clock, 1000)
    fill(small_fs / "filler")

    for _ in range(20):  # telemetry keeps coming until SQLite hits SQLITE_FULL
        await put_readings(ob, clock, 5000)
        if ob.stats().fault:
            break
    await put_readings(ob, clock, 10)
    st = ob.stats()
    assert st.fault == "disk_full" and st.dropped >= 10 and not ballast.exists()

    committed = [await ob.put(A, "alarm.raised", f"smoke-{i}", clock.now(), {"i": i}) for i in range(30)]
    committed.append(await ob.put(E, "event.tamper", "m1", clock.now(), {}))
    dropped = ob.stats().dropped
    ob.put_reading(reading(clock))
    assert ob.stats().dropped == dropped + 1  # rejected at once while the fault stands

    await ob.maintain()
    assert ob.stats().fault == "disk_full"  # no room yet: stays in fault, no ballast made
    (small_fs / "filler").unlink()
    await ob.maintain()
    st = ob.stats()
    assert st.fault == "" and ballast.stat().st_size == BALLAST_BYTES
    await put_readings(ob, clock, 10)
    got = drain(ob, limit=10_000_000)
    assert [r.seq for r in got if r.cls != T] == sorted(committed)
    assert [r.seq for r in got if r.cls == T][-10:] == list(range(st.last_seq + 1, st.last_seq + 11))
    await ob.close()


@pytest.mark.timeout(60)
async def test_an_alarm_that_meets_a_full_disk_is_retried_on_the_ballast_and_commits(small_fs):
    clock = ManualClock()
    ob = make_outbox(small_fs / "o.db", clock, ballast_bytes=BALLAST_BYTES, max_bytes=64 * 1024 * 1024)
    await ob.open()
    fill(small_fs / "filler")
    assert ob.stats().fault == ""  # nothing has noticed yet: the first to meet SQLITE_FULL is an alarm
    body = {"detail": "x" * 2000}  # ~300 kB in all
    seqs = [await ob.put(A, "alarm.raised", f"smoke-{i}", clock.now(), body) for i in range(ALARMS_ON_BALLAST)]
    st = ob.stats()
    assert st.fault == "disk_full" and not (small_fs / "o.db.ballast").exists()
    assert [r.seq for r in drain(ob)] == seqs == list(range(1, ALARMS_ON_BALLAST + 1))
    await ob.close()
