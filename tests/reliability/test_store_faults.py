"""Store faults on real filesystems (issue 15 item 2): a tmpfs mounted read-only, an ext4 image that
remounts itself read-only on an error (errors=remount-ro, the Raspberry Pi OS default, triggered with
ext4's own trigger_fs_error), a corrupt file, a full disk past the ballast, a missing directory.

Each asserts: open() never raises, the store is DOWN with the reason, records put meanwhile are
journalled and committed in arrival order once the store is back, with no hole in seq, and nothing
committed before the fault is lost. Needs root to mount: without it the tests fail (never skip).
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.errors import StoreUnavailable
from gateway.model import RecordClass
from gateway.store.outbox import Outbox
from gateway.supervise import Backoff
from tests.unit.store_support import drain, make_outbox, put_readings, reading

A, E, T = RecordClass.ALARM, RecordClass.EVENT, RecordClass.TELEMETRY


def mount(*args: str) -> None:
    assert os.geteuid() == 0, "the store fault tests mount filesystems and need root"
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def ext4(tmp_path):
    """An ext4 image that turns itself read-only on the first error, like an SD card's root fs."""
    img, mnt = tmp_path / "card.img", tmp_path / "card"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(16 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    mount("-o", "loop,errors=remount-ro", str(img), str(mnt))
    try:
        yield img, mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def wait_for(cond: Callable[[], bool], timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def supervised(ob: Outbox) -> asyncio.Task[None]:
    ob.retry = Backoff(0.05, 0.2)  # the policy of gateway.supervise, quicker for the test
    return asyncio.get_running_loop().create_task(ob.run())


async def put_alarms(ob: Outbox, clock: ManualClock, n: int, tag: str, size: int = 0) -> list[int]:
    return [await ob.put(A, "alarm.raised", f"smoke-{i}", clock.now(), {"tag": tag, "i": i, "pad": "x" * size}) for i in range(n)]


def check_order(ob: Outbox, before: list[int], tag: str, n: int) -> None:
    """Everything committed before the fault is there; the journal followed, in order, no hole."""
    alarms = [r for r in drain(ob, limit=1_000_000) if r.cls == A]
    seqs = [r.seq for r in alarms]
    assert seqs[: len(before)] == before
    journalled = [r for r in alarms if r.body["tag"] == tag]
    assert [r.body["i"] for r in journalled] == list(range(n))
    got = [r.seq for r in journalled]
    assert got == list(range(got[0], got[0] + n)), "a hole in the journal's seqs"


@pytest.mark.timeout(60)
async def test_read_only_at_start_journals_and_commits_once_writable(tmpfs):
    clock = ManualClock()
    path = tmpfs / "o.db"
    ob = make_outbox(path, clock)
    await ob.open()
    before = await put_alarms(ob, clock, 3, "before")
    await ob.close()
    mount("-o", "remount,ro", str(tmpfs))

    ob = make_outbox(path, clock)
    await ob.open()  # never raises
    h = ob.health()
    assert (h["state"], h["reason"]) == ("down", "read-only")
    opened: list[int] = []
    ob.on_open(lambda: opened.append(1))
    assert await put_alarms(ob, clock, 5, "during") == [0] * 5
    ob.put_reading(reading(clock))
    with pytest.raises(StoreUnavailable):
        await ob.transact(lambda conn: None)
    assert ob.health()["journal"] == 5 and ob.stats().depth["alarm"] == 5
    task = supervised(ob)
    await asyncio.sleep(0.3)
    assert ob.health()["state"] == "down" and ob.health()["reopen_attempts"] >= 1
    mount("-o", "remount,rw", str(tmpfs))
    await wait_for(lambda: ob.health()["state"] == "up")
    assert opened == [1] and ob.health()["journal"] == 0
    check_order(ob, before, "during", 5)
    await ob.flush()
    assert [r.cls for r in drain(ob)].count(T) == 1  # the buffered reading too
    task.cancel()
    await ob.close()


@pytest.mark.timeout(90)
async def test_card_remounting_itself_read_only_while_running(ext4):
    img, mnt = ext4
    clock = ManualClock()
    ob = make_outbox(mnt / "o.db", clock)
    await ob.open()
    task = supervised(ob)
    before = await put_alarms(ob, clock, 10, "before")
    await put_readings(ob, clock, 100)
    dev = Path(subprocess.run(["findmnt", "-no", "SOURCE", str(mnt)], check=True, capture_output=True, text=True).stdout.strip()).name
    Path(f"/sys/fs/ext4/{dev}/trigger_fs_error").write_text("test: card failing\n")
    during = [await ob.put(A, "alarm.raised", f"smoke-{i}", clock.now(), {"tag": "during", "i": i}) for i in range(5)]
    assert during == [0] * 5
    h = ob.health()
    assert h["state"] == "down" and h["reason"] in ("read-only", "io_error") and h["journal"] == 5

    def repaired() -> bool:  # the store closed every file, so the card can be unmounted and checked
        return subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0

    await wait_for(repaired)
    subprocess.run(["e2fsck", "-fy", str(img)], capture_output=True)
    mount("-o", "loop,errors=remount-ro", str(img), str(mnt))
    await wait_for(lambda: ob.health()["state"] == "up", 30)
    check_order(ob, before, "during", 5)
    assert sum(1 for r in drain(ob, limit=1_000_000) if r.cls == T) == 100
    task.cancel()
    await ob.close()


@pytest.mark.timeout(60)
async def test_corrupt_database_is_moved_aside_and_a_new_store_reports_it(tmpfs):
    clock = ManualClock()
    path = tmpfs / "o.db"
    ob = make_outbox(path, clock)
    await ob.open()
    await put_alarms(ob, clock, 3, "before")
    old_id = ob.store_id
    await ob.close()
    with open(path, "r+b") as f:
        f.write(b"\xde\xad" * 50)  # the header and first page: not a database any more
    corrupt = path.read_bytes()

    ob = make_outbox(path, clock)
    await ob.open()
    h = ob.health()
    assert h["state"] == "up" and h["corrupt_moved"] == 1 and ob.store_id != old_id
    assert Path(h["moved_to"]).read_bytes() == corrupt  # kept for forensics
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"
    during = await put_alarms(ob, clock, 4, "during")
    recs = sorted(drain(ob), key=lambda r: r.seq)
    assert recs[0].kind == "event.fault" and recs[0].body["code"] == "store_corrupt" and recs[0].seq == 1
    assert recs[0].body["moved_to"] == Path(h["moved_to"]).name
    assert during == [2, 3, 4, 5]
    await ob.close()


def fill(path: Path) -> None:
    # Unbuffered: a buffered file kept the bytes the full disk refused and raised ENOSPC again at close.
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.mark.timeout(120)
async def test_disk_full_past_the_ballast_journals_and_recovers(tmpfs):
    clock = ManualClock()
    ob = make_outbox(tmpfs / "o.db", clock, ballast_bytes=256 * 1024, max_bytes=64 * 1024 * 1024)
    await ob.open()
    task = supervised(ob)
    before = await put_alarms(ob, clock, 5, "before")
    fill(tmpfs / "filler")
    for _ in range(2000):  # alarms use the ballast up; the first that cannot commit is journalled
        seq = await ob.put(A, "alarm.raised", "smoke", clock.now(), {"tag": "ballast", "pad": "x" * 4000})
        if seq == 0:
            break
        before.append(seq)
    h = ob.health()
    assert (h["state"], h["reason"]) == ("down", "full") and h["journal"] == 1
    ob.journal.records.clear()  # that one is checked by the ballast test; here the journal starts clean
    assert await put_alarms(ob, clock, 20, "during") == [0] * 20
    (tmpfs / "filler").unlink()
    await wait_for(lambda: ob.health()["state"] in ("up", "degraded"), 30)
    check_order(ob, before, "during", 20)
    task.cancel()
    await ob.close()


@pytest.mark.timeout(60)
async def test_missing_directory_that_cannot_be_made_is_retried(tmpfs):
    clock = ManualClock()
    mount("-o", "remount,ro", str(tmpfs))
    ob = make_outbox(tmpfs / "state" / "o.db", clock)
    await ob.open()
    assert (ob.health()["state"], ob.health()["reason"]) == ("down", "missing")
    await put_alarms(ob, clock, 7, "during")
    task = supervised(ob)
    mount("-o", "remount,rw", str(tmpfs))
    await wait_for(lambda: ob.health()["state"] == "up")
    check_order(ob, [], "during", 7)
    assert [r.seq for r in drain(ob)] == list(range(1, 8))
    task.cancel()
    await ob.close()
