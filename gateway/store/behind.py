"""Write-behind of telemetry (issue 17): a reading is held in memory with its seq, published from there
at once, and written to SQLite only if it is still unacknowledged when its commit is due.

Every `commit_interval_s / 2` a tick writes, in one transaction, the readings that have waited at
least that long without every consumer's PUBACK, and deletes the rows acknowledged since the last
tick (batched deletions). So a reading is lost on a power cut only if it was neither acknowledged nor
committed within `commit_interval_s`; with the uplink keeping up nothing is written for telemetry at
all. Loop thread only, except the writer-side `write` run as a writer job.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Container
from typing import TYPE_CHECKING, Any

from gateway.errors import StoreError, StoreUnavailable
from gateway.model import Reading, RecordClass
from gateway.store.jobs import CALL, Job
from gateway.store.record import Record

if TYPE_CHECKING:
    from gateway.store.outbox import Outbox

BACKLOG_MAX = 200_000  # readings in memory (unsequenced + unwritten); beyond it new ones are dropped


class WriteBehind:
    def __init__(self, outbox: Outbox) -> None:
        self.ob = outbox
        # seq -> [reading, consumer bits still owed, ingest time]; dicts keep seq order. Times are
        # time.monotonic(), real time like the writer's own timers (the injected clock stamps readings).
        self.mem: dict[int, list[Any]] = {}
        self.committing: dict[int, list[Any]] = {}  # handed to the writer, not yet known committed
        self.acked: dict[int, set[int]] = {}  # consumer bit -> committed seqs it acked (delete pending)
        self.deleting: dict[int, set[int]] = {}  # the acks the running tick is applying
        self.unseq: deque[Reading] = deque()  # waiting for the next seq block
        self.dropped = 0
        self.written = 0  # readings that had to be written (not acked in time)
        self._reserving = False
        self._last_ack = 0.0  # monotonic s of the last acknowledgement
        self._last_write = 0.0
        self._lock = asyncio.Lock()  # one tick at a time (the ticker, flush, close)
        self._task: asyncio.Task[None] | None = None

    # ---- ingest --------------------------------------------------------------------------------
    def ingest(self, reading: Reading) -> bool:
        """Give the reading its seq (or queue it for the next block). False when dropped (backlog)."""
        if len(self.mem) + len(self.committing) + len(self.unseq) >= BACKLOG_MAX:
            self.dropped += 1
            return False
        alloc = self.ob.alloc
        seq = None if self.unseq else alloc.take()
        if seq is None:
            self.unseq.append(reading)
            self.reserve()
            return True
        mask = self.ob._writer.class_mask.get(int(RecordClass.TELEMETRY), 0)
        if mask:  # a class nobody wants still uses its seq (never reused), but is not kept
            self.mem[seq] = [reading, mask, time.monotonic()]
        if alloc.remaining() < alloc.block // 2:
            self.reserve()
        return True

    def assign(self) -> None:
        """Seqs for readings that waited for a block (after a reservation or a record's commit)."""
        while self.unseq:
            seq = self.ob.alloc.take()
            if seq is None:
                self.reserve()
                return
            reading = self.unseq.popleft()
            mask = self.ob._writer.class_mask.get(int(RecordClass.TELEMETRY), 0)
            if mask:
                self.mem[seq] = [reading, mask, time.monotonic()]

    def reserve(self) -> None:
        if self._reserving or self.ob.state != "up":
            return
        self._reserving = True
        asyncio.get_running_loop().create_task(self._reserve())

    async def _reserve(self) -> None:
        w = self.ob._writer
        try:
            await self.ob._submit(Job(CALL, lambda conn: w.reserve_seqs()))
        except StoreError as exc:
            self.ob.log.debug("store_seq_reserve_failed", error=str(exc))
        finally:
            self._reserving = False
        self.assign()
        if self.unseq or self.mem:
            self.ob.wake(RecordClass.TELEMETRY)

    # ---- consumers -----------------------------------------------------------------------------
    def fetch(self, bit: int, limit: int, skip: Container[int], out: list[Record], after: int = 0) -> None:
        """Readings in memory owed to this consumer above seq `after`, seq order, after what fetch found committed."""
        have = {r.seq for r in out}
        names = self.ob.clock
        for table in (self.committing, self.mem):
            for seq, (r, mask, _) in list(table.items()):
                if len(out) >= limit:
                    return
                if not mask & bit or seq <= after or seq in skip or seq in have:
                    continue
                stamp = names.rebase(r.stamp) if not r.stamp.clock_synced else r.stamp
                out.append(Record(seq, RecordClass.TELEMETRY, "reading", r.device_id, stamp, {"values": dict(r.values), "via": r.via}))

    def ack(self, bit: int, seqs: list[int]) -> None:
        self._last_ack = time.monotonic()
        for seq in seqs:
            entry = self.mem.get(seq)
            if entry is not None:
                entry[1] &= ~bit
                if not entry[1]:
                    del self.mem[seq]  # acknowledged before its commit was due: never written
                continue
            entry = self.committing.get(seq)
            if entry is not None:
                entry[1] &= ~bit
            self.acked.setdefault(bit, set()).add(seq)

    def pending_acks(self, bit: int) -> list[set[int]]:
        """Seqs this consumer acked whose rows are not deleted yet: fetch must not return them. The sets
        themselves, not their union: up to ~30,000 seqs copied on every fetch of a drain cost more than the
        handful of rows a cursor fetch looks at."""
        return [s for s in (self.acked.get(bit), self.deleting.get(bit)) if s]

    def depth(self) -> int:
        return len(self.mem) + len(self.committing) + len(self.unseq)

    # ---- writing -------------------------------------------------------------------------------
    def start(self) -> None:
        self.ob.wear.sample()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._ticker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _ticker(self) -> None:
        interval = self.ob.cfg.commit_interval_s
        period = interval / 2
        while True:
            await asyncio.sleep(period)
            self.ob.wear.sample()
            if self.ob.state != "up":
                continue
            now = time.monotonic()
            if now - self._last_ack > interval:
                # Nobody is acknowledging (the uplink is down): one group commit of everything per
                # interval, as before write-behind; half as many commits as ticking every half interval.
                if now - self._last_write >= interval * 0.9:
                    await self.tick(None)
            else:
                await self.tick(now - period * 0.9)

    async def tick(self, cutoff_mono: float | None = None) -> None:
        """Write readings ingested at or before cutoff (None: all) still owed, and delete acked rows."""
        async with self._lock:
            rows: dict[int, list[Any]] = {}
            # Disk full: the space left is for alarms. Readings already holding a seq stay in memory
            # (still published from there) instead of being dropped, which would leave holes.
            held = self.mem.items() if self.ob._writer.stats.fault != "disk_full" else ()
            for seq, entry in held:
                if cutoff_mono is not None and entry[2] > cutoff_mono:
                    break  # ingest order is seq order
                rows[seq] = entry
            acks, self.acked = self.acked, {}
            if not rows and not acks:
                return
            self.deleting = acks
            self._last_write = time.monotonic()
            for seq in rows:
                del self.mem[seq]
            self.committing.update(rows)
            w = self.ob._writer
            batch = [(seq, e[1], e[0]) for seq, e in rows.items()]
            ack_lists = {bit: [(s,) for s in sorted(seqs)] for bit, seqs in acks.items()}
            try:
                await self.ob._submit(Job(CALL, lambda conn: w.write_behind(batch, ack_lists)))
            except StoreUnavailable:
                self._restore(rows, acks)  # kept in memory; written once the store is back
                return
            except StoreError as exc:  # e.g. disk full: telemetry is what gives way (counted)
                self.dropped += len(rows)
                self.ob.log.debug("store_readings_dropped", count=len(rows), error=str(exc))
                for bit, seqs in acks.items():
                    self.acked.setdefault(bit, set()).update(seqs)
            finally:
                self.deleting = {}
                for seq in rows:
                    self.committing.pop(seq, None)
            self.written += len(rows)

    def _restore(self, rows: dict[int, list[Any]], acks: dict[int, set[int]]) -> None:
        self.mem = {**rows, **self.mem}
        for bit, seqs in acks.items():
            self.acked.setdefault(bit, set()).update(seqs)

    def unsequence(self) -> None:
        """The database was replaced (corrupt): readings held here give up their old seqs."""
        old = [e[0] for e in (*self.committing.values(), *self.mem.values())]
        self.mem.clear()
        self.committing.clear()
        self.acked.clear()
        self.unseq = deque(old + list(self.unseq))
