"""The byte cap holds on the files themselves (DB + WAL), whatever the group-commit batch sizes are.

Issue 16: under load the readings arrived in smaller group commits and DB + WAL ended one page over
max_bytes, because a batch's pages were added before the oldest telemetry was evicted and stayed in
the file as free pages. Batch sizes are driven here by flushing after every batch, not by timing.
"""

from __future__ import annotations

import os

import pytest

from gateway.clock import ManualClock
from gateway.model import RecordClass
from tests.unit.store_support import drain, make_outbox, reading

MAX_BYTES = 1024 * 1024


def files_bytes(path) -> int:
    return sum(os.path.getsize(p) for p in (str(path), f"{path}-wal") if os.path.exists(p))


@pytest.mark.parametrize("batch", [25, 100, 1000])
async def test_db_and_wal_never_exceed_max_bytes_after_any_group_commit(tmp_path, batch):
    clock = ManualClock()
    path = tmp_path / "o.db"
    ob = make_outbox(path, clock, max_bytes=MAX_BYTES)
    await ob.open()
    alarm = await ob.put(RecordClass.ALARM, "alarm.raised", "s1", clock.now(), {"pad": "x" * 500})
    sizes = []
    for _ in range(8_000 // batch):  # ~1.5 MB of ~190-byte readings offered to a 1 MiB store
        for i in range(batch):
            ob.put_reading(reading(clock, "pump-1", i=i, note="x" * 150))
        await ob.flush()  # one group commit per batch
        sizes.append(files_bytes(path))
    await ob.maintain()
    sizes.append(files_bytes(path))
    st = ob.stats()
    assert st.evicted > 0, "the cap was never reached: the test offers too little"
    assert max(sizes) <= MAX_BYTES, f"over the cap after a commit: {max(sizes)} > {MAX_BYTES}"
    assert st.db_bytes <= MAX_BYTES
    got = drain(ob, limit=1_000_000)
    assert got[0].seq == alarm  # the alarm is never evicted to make room
    tele = [r.seq for r in got if r.cls == RecordClass.TELEMETRY]
    assert tele == list(range(tele[0], st.last_seq + 1))  # only the oldest went, no hole
    await ob.close()
