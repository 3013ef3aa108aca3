"""The outbox writer thread: sole owner of the read-write connection and its transactions.

Coroutines hand it jobs (queue.SimpleQueue) and get results back through their loop. Alarms and events
commit first, each batch in its own transaction with synchronous=FULL (one WAL fsync); telemetry comes
from the write-behind (behind.py) only when it is still unacknowledged at its commit interval, also
FULL. seq comes from the shared SeqAlloc (seqs.py); meta is written only when a seq block is reserved,
and counters only every COUNTERS_PERSIST_S and at close (issue 17: no fixed page rewritten per commit).
"""

from __future__ import annotations

import collections
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.errors import StoreError, StoreFull, StoreUnavailable
from gateway.model import RecordClass
from gateway.store import caps, faults, opening
from gateway.store.ballast import Ballast
from gateway.store.codec import Names, encode_json, encode_reading
from gateway.store.jobs import BATCHED, CALL, STOP, WAKE, Counters, Job, Tx
from gateway.store.maintenance import Maintenance
from gateway.store.seqs import SeqAlloc

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from gateway.clock import Clock
    from gateway.config.schema import Store
    from gateway.model import Reading

SQLITE_IOERR, SQLITE_FULL = faults.SQLITE_IOERR, faults.SQLITE_FULL
DURABLE_RETRIES = 5  # an alarm commit is retried this often (20 ms .. 320 ms apart) before put() raises
DISK_FULL_WAL_BYTES = 256 * 1024  # with the disk full, recycle the WAL past this (alarms live on the ballast)
COUNTERS_PERSIST_S = 300.0  # tele_rows/evicted to meta at most this often (recounted after a crash)
TELE = int(RecordClass.TELEMETRY)
T = TypeVar("T")

class Writer:
    def __init__(self, cfg: Store, clock: Clock, log: FilteringBoundLogger, consumers: dict[str, set[RecordClass]], alloc: SeqAlloc | None = None) -> None:
        self.cfg, self.clock, self.log, self.consumers = cfg, clock, log, consumers
        self.path: str = cfg.path
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.readings: collections.deque[Reading] = collections.deque()  # only what a failed writer hands back
        self.alloc = alloc or SeqAlloc()
        self.crash_gap: int | None = None  # seq_reserved of a store that was not closed cleanly
        self._persisted = (-1, -1)
        self._next_persist = 0.0
        self._last_reserve = time.monotonic()
        self.names = Names()
        self.stats = Counters()
        self.bits: dict[str, int] = {}
        self.class_mask: dict[int, int] = {}
        self.ballast = Ballast(self.path, cfg.ballast_bytes)
        self.maint = Maintenance(self)
        self.on_commit: Callable[[int], None] = lambda cls_min: None
        # Called (writer thread) once when the database cannot be written any more: the outbox goes DOWN.
        self.on_fault: Callable[[StoreUnavailable], None] = lambda exc: None
        self.broken: StoreUnavailable | None = None
        self._gate = threading.Lock()  # submit() vs the thread ending: no job is ever left unanswered
        self._closed = False
        self.ready: Future[None] = Future()
        self.conn: sqlite3.Connection | None = None
        self.tx: Tx | None = None
        self._sync = ""
        self._evict_logged: set[str] = set()
        self._thread = threading.Thread(target=self._main, name="outbox-writer", daemon=True)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Future[None]:
        self._thread.start()
        return self.ready

    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def submit(self, job: Job) -> None:
        with self._gate:
            if self._closed:
                raise self.broken or StoreUnavailable("io_error", "outbox writer is not running")
            self.jobs.put(job)

    def _main(self) -> None:
        try:
            self._open()
        except BaseException as exc:  # noqa: BLE001 - reported to open() through the future; the thread ends
            self._finish()
            self.ready.set_exception(exc)
            return
        self.ready.set_result(None)
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - the outbox goes down and reopens; callers get errors
            self.log.critical("store_writer_died", error=repr(exc))
            self._fault(faults.unavailable(exc, self.path))
        finally:
            assert self.conn is not None
            try:
                self.conn.close()
            except sqlite3.Error as exc:
                self.log.debug("store_close_failed", error=str(exc))
            self._finish()

    def _finish(self) -> None:
        with self._gate:
            self._closed = True
        self._fail_pending(self.broken or StoreUnavailable("io_error", "outbox writer stopped"))

    def _fault(self, exc: StoreUnavailable) -> None:
        """The file cannot be written: stop taking work (the outbox journals it) and say so once."""
        if self.broken is None:
            self.broken = exc
            self.on_fault(exc)

    def _open(self) -> None:
        faults.secure_files(self.path)
        self.conn = conn = opening.connect(self.path, self.cfg.max_bytes)
        self.names.load(conn)
        self._set_sync(True)
        conn.execute("BEGIN IMMEDIATE")
        try:
            opening.init_meta(conn, self.clock.wall())
            self.bits = opening.sync_consumers(conn, self.consumers, self.log)
            s = self.stats
            reserved = max(opening.last_seq(conn), int(opening.meta_get(conn, "seq_reserved", 0)))
            continuing = self.alloc.continues(str(opening.meta_get(conn, "store_id")))
            if continuing:  # reopened after being DOWN: this process knows exactly what it handed out
                reserved = max(reserved, self.alloc.last_used())
            elif opening.meta_get(conn, "clean", 1) in (0, "0"):
                # Not closed cleanly: seqs up to `reserved` may have been handed out and lost; skip them.
                self.crash_gap = reserved
                opening.meta_set(conn, tele_rows=conn.execute("SELECT count(*) FROM telemetry").fetchone()[0])
            if opening.meta_get(conn, "boot_id") != self.clock.boot_id:
                # Rows of earlier boots can no longer be re-based (their monotonic clock is gone).
                opening.meta_set(conn, boot_id=self.clock.boot_id, boot_first_seq=reserved + 1)
            upto = reserved + self.alloc.block
            opening.meta_set(conn, seq_reserved=upto, clean=0)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.close()
            raise
        if not continuing:
            self.alloc.reset(reserved, str(opening.meta_get(conn, "store_id")))
        self.alloc.reserved(upto)
        s.last_seq = reserved
        s.store_id = opening.meta_get(conn, "store_id")
        s.tele_rows = int(opening.meta_get(conn, "tele_rows", 0))
        s.evicted = int(opening.meta_get(conn, "evicted", 0))
        for cls in RecordClass:
            self.class_mask[int(cls)] = sum(b for n, b in self.bits.items() if cls in self.consumers[n])
        self.maint.opened(int(opening.meta_get(conn, "boot_first_seq", 1)))

    def _fail_pending(self, exc: BaseException) -> None:
        while True:
            try:
                self.jobs.get_nowait().reply(None, exc)
            except queue.Empty:
                return

    # ---- the loop -----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            timeout = 0.0 if self.maint.busy() else max(0.0, self.maint.next_due - time.monotonic())
            jobs = self._take(timeout)
            stop = any(j.kind == STOP for j in jobs)
            work = [j for j in jobs if j.kind not in (STOP, WAKE)]
            work.sort(key=lambda j: not j.durable)  # stable: alarms and events first, then the rest in order
            self._run_jobs(work)
            now = time.monotonic()
            if self.broken is None:
                self.maint.step(now, final=stop)
            if stop or self.broken is not None:
                for j in jobs:
                    if j.kind == STOP:
                        j.reply(None, None)
                return

    def _take(self, timeout: float) -> list[Job]:
        try:
            jobs = [self.jobs.get(timeout=timeout) if timeout > 0 else self.jobs.get_nowait()]
        except queue.Empty:
            return []
        while True:
            try:
                jobs.append(self.jobs.get_nowait())
            except queue.Empty:
                return jobs

    def _run_jobs(self, jobs: list[Job]) -> None:
        i = 0
        while i < len(jobs):
            group = [jobs[i]]
            while jobs[i].kind in BATCHED and i + len(group) < len(jobs) and jobs[i + len(group)].kind == jobs[i].kind \
                    and jobs[i + len(group)].durable == jobs[i].durable:
                group.append(jobs[i + len(group)])
            i += len(group)
            if group[0].kind == CALL:  # runs its own transactions (purge, maintenance, re-base)
                self._call(group[0])
                continue
            fns = [j.fn for j in group]

            def run_group(conn: sqlite3.Connection) -> list[Any]:
                out = []
                for fn in fns:
                    assert fn is not None, "PUT/ACK/TRANSACT jobs carry their fn"
                    out.append(fn(conn))
                return out

            try:
                results = self.transaction(run_group, durable=group[0].durable)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                for j in group:
                    j.reply(None, exc)
                continue
            for j, result in zip(group, results):
                j.reply(result, None)

    def _call(self, job: Job) -> None:
        assert job.fn is not None and self.conn is not None
        try:
            result = job.fn(self.conn)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            job.reply(None, exc)
        else:
            job.reply(result, None)

    # ---- transactions -------------------------------------------------------------------------
    def _set_sync(self, durable: bool) -> None:
        mode = "FULL" if durable else "NORMAL"
        if mode != self._sync:
            assert self.conn is not None
            self.conn.execute(f"PRAGMA synchronous={mode}")
            self._sync = mode

    def transaction(self, body: Callable[[sqlite3.Connection], T], durable: bool, sync_full: bool | None = None) -> T:
        """Run body in one BEGIN IMMEDIATE .. COMMIT; retry a durable one on SQLITE_FULL / IOERR.

        sync_full (default: durable) picks synchronous=FULL for this commit: one WAL fsync."""
        if self.broken is not None:
            raise self.broken
        attempt = 0
        while True:
            try:
                return self._transaction_once(body, durable if sync_full is None else sync_full)
            except sqlite3.Error as exc:
                code = faults.sqlite_code(exc)
                if faults.is_fatal_sqlite(exc, self.path):
                    # Read-only (the card remounted itself), corrupt, gone: no retry helps now.
                    self._storage_failure(code, exc)
                    self._fault(faults.unavailable(exc, self.path))
                    assert self.broken is not None
                    raise self.broken from exc
                if code not in (SQLITE_FULL, SQLITE_IOERR):
                    raise
                self._storage_failure(code, exc)
                if not durable or attempt >= DURABLE_RETRIES:
                    if durable:  # an alarm could not commit even on the ballast: the store is DOWN
                        self._fault(faults.unavailable(exc, self.path))
                        assert self.broken is not None
                        raise self.broken from exc
                    cls = StoreFull if code == SQLITE_FULL else StoreError
                    raise cls(f"outbox commit failed: {exc} ({getattr(exc, 'sqlite_errorname', code)})") from exc
                time.sleep(0.02 * 2**attempt)
                attempt += 1

    def _transaction_once(self, body: Callable[[sqlite3.Connection], T], durable: bool) -> T:
        conn = self.conn
        assert conn is not None
        self._set_sync(durable)
        conn.execute("BEGIN IMMEDIATE")
        s = self.stats
        tx = self.tx = Tx(seq=0, names_mark=self.names.mark())
        try:
            result = body(conn)
            self.names.save(conn)
            if tx.reserve_to:
                # A record ran past the reserved block: its commit carries the next reservation, so
                # no seq is handed out that a crash could make the store hand out again.
                opening.meta_set(conn, seq_reserved=tx.reserve_to)
            conn.execute("COMMIT")
        except BaseException:
            self.tx = None
            if tx.taken:
                self.alloc.give_back(tx.taken)
            self.names.rollback(tx.names_mark)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    self.log.warning("store_rollback_failed", error=str(exc))
            raise
        self.tx = None
        if tx.reserve_to:
            self._reserved_at(tx.reserve_to)
        s.last_seq, s.commits = self.alloc.last_used(), s.commits + 1
        s.tele_rows += tx.tele_delta
        s.evicted += tx.evicted
        if s.fault == "io_error":
            s.fault = ""
            self.log.info("store_io_recovered")
        elif s.fault == "disk_full" and caps.wal_bytes(self.path) > DISK_FULL_WAL_BYTES:
            self._recycle_wal()
        if tx.cls_min is not None:
            self.on_commit(tx.cls_min)
        return result

    def _storage_failure(self, code: int, exc: sqlite3.Error) -> None:
        s = self.stats
        name = "disk_full" if code == SQLITE_FULL else "io_error"
        s.failures[name] = s.failures.get(name, 0) + 1
        if code == SQLITE_FULL:
            released = self.ballast.release()
            if s.fault != "disk_full":
                self.log.warning("store_disk_full", ballast_released=released, error=str(exc))
            s.fault = "disk_full"
            self._recycle_wal()
        elif s.fault != "io_error":
            s.fault = s.fault or "io_error"
            self.log.warning("store_io_error", error=str(exc))
        else:
            self.log.debug("store_io_error", error=str(exc))

    def _recycle_wal(self) -> None:
        """On a full disk the WAL must not keep growing: copy it into the database (which grows only by
        the few distinct pages the alarms touched) and start it over from its beginning (RESTART)."""
        assert self.conn is not None
        try:
            self.conn.execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.Error as exc:
            self.log.debug("store_checkpoint_failed", error=str(exc))

    # ---- records ------------------------------------------------------------------------------
    def add_record(self, conn: sqlite3.Connection, cls: RecordClass, kind: str, device: str, stamp: Any, body: dict[str, Any]) -> int:
        tx = self.tx
        if tx is None or threading.current_thread() is not self._thread:
            raise StoreError("add_record is only valid inside Outbox.transact")
        if cls == RecordClass.TELEMETRY:
            raise ValueError("telemetry goes through put_reading, not as a record")
        seq = self.alloc.take_free() or self.alloc.take()
        if seq is None:
            seq = self.alloc.take_over()
            tx.reserve_to = max(tx.reserve_to, seq + self.alloc.block)
        tx.taken.append(seq)
        tx.seq = seq
        mask = self.class_mask[int(cls)]
        if mask:  # a class no consumer wants still gets its seq (never reused) but no row
            conn.execute(
                "INSERT INTO record (seq, cls, pending, kind, device, stamp, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, int(cls), mask, kind, device, encode_json(stamp), encode_json(body)),
            )
        tx.touched(int(cls))
        return seq

    def acked(self, conn: sqlite3.Connection, bit: int, params: list[tuple[int]]) -> None:
        """Inside a transaction: clear this consumer's bit on the given seqs; delete rows nobody is owed."""
        tx = self.tx
        assert tx is not None
        for table in ("record", "telemetry"):
            gone = conn.executemany(f"DELETE FROM {table} WHERE seq = ? AND pending = {bit}", params).rowcount
            conn.executemany(f"UPDATE {table} SET pending = pending & ~{bit} WHERE seq = ? AND pending & {bit}", params)
            if table == "telemetry":
                tx.tele_delta -= gone
            tx.dirty = tx.dirty or gone > 0

    def write_behind(self, batch: list[tuple[int, int, Any]], acks: dict[int, list[tuple[int]]]) -> None:
        """One write-behind tick (behind.py): insert readings still owed (seqs given at ingest) and delete
        what was acknowledged since the last tick, with the caps, in one FULL transaction."""
        def body(conn: sqlite3.Connection) -> None:
            tx = self.tx
            assert tx is not None
            rows = [(seq, mask, encode_reading(self.names, r)) for seq, mask, r in batch if mask]
            if rows:
                self.insert_within_cap(conn, rows)
                tx.tele_delta += len(rows)
                tx.touched(TELE)
            for bit, params in acks.items():
                self.acked(conn, bit, params)
            if rows:
                self.enforce_caps(conn)

        if self.stats.fault == "disk_full" and batch:  # the space left (the released ballast) is for alarms
            self.stats.dropped += len(batch)
            batch = []
        self.transaction(body, durable=False, sync_full=bool(batch))
        # The cap is on DB + WAL together: a WAL past its share is checkpointed now, not at the next
        # maintenance pass (a burst between passes would otherwise overshoot max_bytes).
        if caps.wal_bytes(self.path) > caps.wal_budget_bytes(self.cfg.max_bytes):
            self.maint.checkpoint(truncate=True)

    def reserve_seqs(self) -> None:
        """Reserve the next seq block durably (one small FULL commit of the meta page)."""
        def body(conn: sqlite3.Connection) -> None:
            assert self.tx is not None
            self.tx.reserve_to = self.alloc.want()

        self.transaction(body, durable=True)

    def _reserved_at(self, upto: int) -> None:
        now = time.monotonic()
        self.alloc.reserved(upto, now - self._last_reserve)
        self._last_reserve = now

    def persist_counters(self, clean: bool = False) -> None:
        """Counters to meta every COUNTERS_PERSIST_S (and at close, with the unused seqs given back)."""
        now = time.monotonic()
        s = self.stats
        if not clean and (now < self._next_persist or self._persisted == (s.tele_rows, s.evicted)):
            return
        self._next_persist = now + COUNTERS_PERSIST_S
        values: dict[str, Any] = {"tele_rows": s.tele_rows, "evicted": s.evicted}
        if clean:  # nothing above last_used was handed out: the next open starts right after it
            used = self.alloc.last_used()
            values.update(last_seq=used, seq_reserved=used, clean=1)
            self.alloc.shrink(used)

        def body(conn: sqlite3.Connection) -> None:
            opening.meta_set(conn, **values)

        self.transaction(body, durable=clean)
        self._persisted = (s.tele_rows, s.evicted)

    def insert_within_cap(self, conn: sqlite3.Connection, rows: list[tuple[int, int, bytes]]) -> None:
        """Insert a telemetry batch, making room first when it would take the data pages past the byte budget.

        Evicting only after the insert is too late for the cap on file sizes: the pages the batch added
        stay in the file as free pages (SQLite never shrinks it without VACUUM), so DB + WAL ended over
        max_bytes (issue 16: 1052672 > 1048576). A batch that crosses the budget is rolled back, the oldest
        telemetry evicted by the batch's measured size, and the batch inserted into the freed pages.
        Rare: eviction goes down to the low-water mark, so the next batches fit."""
        sql = "INSERT OR IGNORE INTO telemetry (seq, pending, body) VALUES (?, ?, ?)"  # a retried tick
        budget = self.cfg.max_bytes - caps.wal_budget_bytes(self.cfg.max_bytes)
        before = caps.used_page_bytes(conn)
        conn.execute("SAVEPOINT tele_batch")
        conn.executemany(sql, rows)
        grown = caps.used_page_bytes(conn) - before
        if before + grown > budget:
            conn.execute("ROLLBACK TO tele_batch")
            tx = self.tx
            assert tx is not None
            self.count_evicted(caps.evict_for_bytes(conn, budget - grown, self.stats.tele_rows + tx.tele_delta), "cap")
            conn.executemany(sql, rows)
        conn.execute("RELEASE tele_batch")

    def enforce_caps(self, conn: sqlite3.Connection) -> None:
        """Row cap and byte cap on telemetry, oldest first; inside the current transaction."""
        tx = self.tx
        assert tx is not None
        rows = self.stats.tele_rows + tx.tele_delta
        gone = caps.evict_oldest(conn, rows - self.cfg.telemetry_max_rows)
        budget = self.cfg.max_bytes - caps.wal_budget_bytes(self.cfg.max_bytes)
        gone += caps.evict_for_bytes(conn, budget, rows - gone)
        self.count_evicted(gone, "cap")

    def count_evicted(self, n: int, why: str) -> None:
        """Inside a transaction: n telemetry rows were evicted. First time WARNING, then DEBUG."""
        if not n:
            return
        tx = self.tx
        assert tx is not None
        tx.tele_delta -= n
        tx.evicted += n
        tx.dirty = True
        level = self.log.debug if why in self._evict_logged else self.log.warning
        self._evict_logged.add(why)
        level("store_telemetry_evicted", rows=n, reason=why, evicted_total=self.stats.evicted + tx.evicted)
