"""Outbox API (the contract uplink, rules and GB 26875 code against), on top of the writer thread.

Threading: one writer thread owns the read-write connection (group commit, WAL, synchronous=FULL on
the alarm/event path); every public coroutine is called from the asyncio loop and never blocks it.
Readers (uplink fetch, CLI) use their own connections.

Records:
  seq      one counter per store across all classes, strictly increasing in commit order, never reused
  cls      RecordClass (ALARM=0, EVENT=1, STATUS=2, TELEMETRY=3); also the priority
  kind     short string: "alarm.raised", "event.smoke", "reading", ...
  device   device id or ""
  stamp    gateway.model.Stamp taken at read time (re-based before sending if taken unsynced)
  body     dict (JSON-able), the record's payload as the wire will carry it;
           telemetry: {"values": {...}, "via": "..."} (one Reading, never merged)

Consumers: named uplinks ("mqtt", later "gb26875"). A record is deleted once every consumer that
wants its class has acknowledged it. Each consumer has its own progress (a bit in each row).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.errors import StoreError, StoreUnavailable
from gateway.model import Reading, RecordClass, Stamp
from gateway.store.availability import Availability
from gateway.store.behind import WriteBehind
from gateway.store.journal import Entry
from gateway.store.reader import Reader, file_bytes
from gateway.store.record import AnyOf, OutboxStats, Record
from gateway.store.jobs import ACK, CALL, PUT, STOP, TRANSACT, Job
from gateway.store.seqs import SeqAlloc
from gateway.store.writer import Writer

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from gateway.clock import Clock
    from gateway.config.schema import Store

__all__ = ["Outbox", "OutboxStats", "Record"]

T = TypeVar("T")


def proc_write_bytes() -> int:
    """write_bytes of this process from /proc/self/io (what reached the block layer: SD wear)."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class WearMeter:
    """bytes_written per day projected from the last hour of /proc/self/io (issue 17: SD wear at a glance).
    now/read: the clock and the byte counter (injectable for tests)."""

    SAMPLE_S = 60.0
    SPAN_S = 3600.0

    def __init__(self, now: Callable[[], float] = time.monotonic, read: Callable[[], int] = proc_write_bytes) -> None:
        self.samples: deque[tuple[float, int]] = deque()
        self._now, self._read = now, read

    def sample(self) -> None:
        now = self._now()
        if self.samples and now - self.samples[-1][0] < self.SAMPLE_S:
            return
        self.samples.append((now, self._read()))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.SPAN_S:
            self.samples.popleft()

    def per_day(self) -> int:
        """0 until two samples a minute apart exist."""
        if len(self.samples) < 2:
            return 0
        (t0, b0), (t1, b1) = self.samples[0], (self._now(), self._read())
        return int((b1 - b0) / max(t1 - t0, 1.0) * 86400)

    def span_s(self) -> int:
        """How many seconds per_day() is projected from (up to an hour; less soon after a start, when an
        alarm burst or a backlog drain weighs as much as a day's worth would)."""
        return int(self._now() - self.samples[0][0]) if len(self.samples) >= 2 else 0


class Outbox(Availability):
    def __init__(self, cfg: Store, clock: Clock, log: FilteringBoundLogger, consumers: dict[str, set[RecordClass]]) -> None:
        """cfg: gateway.config.schema.Store. consumers: name -> classes it wants, e.g. {"mqtt": set(RecordClass)}."""
        self.cfg, self.clock, self.log = cfg, clock, log
        self.consumers = {name: set(classes) for name, classes in consumers.items()}
        self.store_id = ""  # random UUID minted when the database is created (idempotency key part)
        self.alloc = SeqAlloc()  # seqs at ingest, reserved durably in blocks (seqs.py)
        self._writer = Writer(cfg, clock, log, self.consumers, self.alloc)
        self.behind = WriteBehind(self)
        self.wear = WearMeter()
        self._reader: Reader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callbacks: list[Callable[[RecordClass], None]] = []
        self._dropped_logged = False
        self._reading_wake = False
        Availability.__init__(self)

    # ---- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        """Open/create the DB, run migrations, make the ballast file, start the writer thread. Never
        waits for the uplink and never raises for a store that cannot be opened: the outbox is then
        DOWN with a reason (health()), journals records in memory and `run()` retries (issue 15)."""
        self._loop = asyncio.get_running_loop()
        await self._open_first()

    async def close(self) -> None:
        """Flush pending telemetry (one last group commit), checkpoint, stop the writer thread.
        While DOWN: one last attempt to reopen and commit the journal; what still cannot be written is
        logged (store_journal_lost) and lost with the process."""
        await self._close_availability()
        await self.behind.stop()
        if self.state == "up":
            try:  # what memory still owes: written, acks applied, unused seqs given back
                await self.behind.tick(None)
                w = self._writer
                await self._submit(Job(CALL, lambda conn: w.persist_counters(clean=True)))
            except StoreError as exc:
                self.log.error("store_close_flush_failed", error=str(exc), readings=self.behind.depth())
        if self._reader is not None:  # first, so the writer is the last connection and removes the WAL
            self._reader.close()
            self._reader = None
        if self._writer.alive():
            try:
                await self._submit(Job(STOP))
            except StoreUnavailable:
                pass
            await asyncio.to_thread(self._writer.join, 10.0)

    def writer_alive(self) -> bool:
        """For the watchdog: the thread that commits alarms is running, or the store is DOWN and being
        retried by run() (a read-only card must not make systemd restart the alarm core)."""
        return self.state != "up" or self._writer.alive()

    # ---- writing ------------------------------------------------------------------------------
    def _submit(self, job: Job) -> asyncio.Future[Any]:
        loop = self._loop or asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any, exc: BaseException | None) -> None:
            if fut.done():
                return  # the caller was cancelled; the commit (if any) stands
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        def reply(result: Any, exc: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(settle, result, exc)
            except RuntimeError:
                pass  # loop closed during shutdown: nobody is waiting any more

        job.reply = reply
        self._writer.submit(job)
        return fut

    def _submit_fn(self, kind: int, fn: Callable[[sqlite3.Connection], T], durable: bool = False) -> asyncio.Future[T]:
        """_submit for a job whose result the caller wants: the writer replies with fn(conn)'s."""
        fut: asyncio.Future[T] = self._submit(Job(kind, fn, durable=durable))
        return fut

    async def put(self, cls: RecordClass, kind: str, device: str, stamp: Stamp, body: dict[str, Any]) -> int:
        """Durably commit one alarm/event/status record (synchronous=FULL transaction) and return its seq.
        Returns only after the commit. When the store is DOWN (or goes down on this commit) the record goes
        to the in-memory journal instead, is committed in order once the store reopens, and 0 is returned."""
        if cls == RecordClass.TELEMETRY:
            raise ValueError("telemetry goes through put_reading")
        entry = Entry(cls, kind, device, stamp, body, self._next_arrival())
        if self.state != "up":  # DOWN, or reopened and still committing the journal: keep arrival order
            self._journal_add(entry)
            return 0
        w = self._writer
        try:
            return await self._submit_fn(PUT, lambda conn: w.add_record(conn, cls, kind, device, stamp, body), durable=True)
        except StoreUnavailable:
            self._journal_add(entry)  # the writer's fault callback has taken the store DOWN
            return 0

    def put_reading(self, reading: Reading) -> None:
        """Give the reading its seq now and hold it in memory for the uplinks (write-behind, issue 17):
        it is written to SQLite only if still unacknowledged after commit_interval_s / 2. Never blocks;
        never merges. Over the memory bound or with the disk full it is dropped and counted."""
        if self.state != "up":
            self.journal.add_reading(reading)
            return
        w = self._writer
        if w.stats.fault == "disk_full" or not self.behind.ingest(reading):
            w.stats.dropped += 1
            level = self.log.debug if self._dropped_logged else self.log.warning
            self._dropped_logged = True
            level("store_reading_dropped", reason=w.stats.fault or "backlog", backlog=self.behind.depth(), dropped=w.stats.dropped)
            return
        if self._callbacks and not self._reading_wake:
            # Published from memory at once: one wake per loop turn, however many readings it brought.
            self._reading_wake = True
            asyncio.get_running_loop().call_soon(self._wake_readings)

    def _wake_readings(self) -> None:
        self._reading_wake = False
        self.wake(RecordClass.TELEMETRY)

    async def transact(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """Run fn(conn) inside one writer transaction (FULL when durable) and return its result.
        For stages that keep their own tables (alarm state, nonce cache) and want them atomic with records:
        call `Outbox.add_record(conn, ...)` inside fn to enqueue a record in the same transaction.
        Raises StoreUnavailable while the store is DOWN: the caller keeps its work and retries (the rules'
        committer does); `on_open` tells it when the store is back."""
        self._require_up()
        return await self._submit_fn(TRANSACT, fn, durable=durable)

    def add_record(self, conn: sqlite3.Connection, cls: RecordClass, kind: str, device: str, stamp: Stamp, body: dict[str, Any]) -> int:
        """Inside `transact`: insert a record, assign and return its seq."""
        return self._writer.add_record(conn, cls, kind, device, stamp, body)

    async def ack(self, consumer: str, seqs: Iterable[int]) -> None:
        """Mark delivered for this consumer. Alarm, event and status rows are updated (deleted once every
        consumer acked them) before this returns, as before; telemetry acks are batched (issue 17): held
        readings are simply forgotten, committed rows go at the next write-behind tick."""
        wanted = [int(s) for s in seqs]
        if not wanted:
            return
        self._require_up()
        bit = self._bit(consumer)
        assert self._reader is not None
        records = self._reader.record_seqs([s for s in wanted if s not in self.behind.mem and s not in self.behind.committing])
        if records:
            w, params = self._writer, [(s,) for s in sorted(records)]
            await self._submit(Job(ACK, lambda conn: w.acked(conn, bit, params)))
        self.behind.ack(bit, [s for s in wanted if s not in records])

    async def purge_telemetry(self, older_than_s: float) -> int:
        """Operator purge (CLI `queue purge --telemetry`): delete telemetry read more than older_than_s ago."""
        def purge(conn: sqlite3.Connection) -> int:
            return self._writer.maint.purge(older_than_s, "purge")

        self._require_up()
        await self.behind.tick(None)  # readings held in memory are waiting too
        return await self._submit_fn(CALL, purge)

    async def maintain(self) -> None:
        """Run the periodic upkeep now (TTL, checkpoint, ballast recovery) instead of at harden_interval_s."""
        if self.state != "up":
            return
        await self._submit(Job(CALL, lambda conn: self._writer.maint.run()))

    async def flush(self) -> None:
        """Write every reading held in memory and apply pending acks now (tests, benchmarks, shutdown)."""
        if self.state != "up":
            return
        self.behind.assign()
        await self.behind.tick(None)

    async def rebase_unsynced(self) -> int:
        """Re-base wall times of unsynced records from this boot once the clock syncs; rows re-based.
        The writer does this by itself within ~1 s of the clock syncing; this finishes it at once."""
        if self.state != "up":
            return 0
        return await self._submit_fn(CALL, lambda conn: self._writer.maint.rebase_now())

    # ---- reading ------------------------------------------------------------------------------
    def _bit(self, consumer: str) -> int:
        try:
            return self._writer.bits[consumer]
        except KeyError:
            raise StoreError(f"unknown outbox consumer {consumer!r} (configured: {sorted(self.consumers)})") from None

    def fetch(self, consumer: str, limit: int, exclude: Iterable[int] = (), classes: Iterable[RecordClass] | None = None,
              after: int = 0) -> list[Record]:
        """Records this consumer has not acknowledged, ORDER BY cls, seq; skipping `exclude` (in flight).
        Uses a reader connection; safe from the loop thread (fast, indexed). Nothing while DOWN: the
        journal is delivered once it is committed (it has no seq before).

        `after` is the caller's telemetry cursor: only readings with a higher seq are returned. A drain
        streaming through a backlog passes the last seq it published, so a fetch steps over nothing it has
        in flight or acked (each of those rows was read again and dropped in Python: ~35 ms a fetch with a
        10,000-reading window and 30,000 acks waiting for their batched delete). 0 scans from the
        consumer's floor, as every caller but the MQTT drain does; the drain goes back to 0 whenever a
        row it passed may be owed again (docs/uplink.md "Drain cursor")."""
        if self._reader is None or self.state != "up":
            return []
        bit = self._bit(consumer)
        wanted = self.consumers[consumer] if classes is None else set(classes) & self.consumers[consumer]
        skip = AnyOf([exclude if isinstance(exclude, (set, frozenset)) else set(exclude), *self.behind.pending_acks(bit)])
        out = self._reader.fetch(consumer, bit, limit, skip, wanted, after)
        if RecordClass.TELEMETRY in wanted and len(out) < limit:
            self.behind.fetch(bit, limit, skip, out, after)
        return out

    def stats(self) -> OutboxStats:
        """Cheap snapshot for status and the CLI."""
        s = self._writer.stats
        depth: dict[str, int] = {}
        oldest: dict[str, float] = {}
        if self._reader is not None and self.state == "up":
            try:
                depth, oldest = self._reader.depth_and_age()
            except sqlite3.Error as exc:
                self.log.debug("store_stats_failed", error=str(exc))
        if depth:  # readings held in memory (write-behind) are waiting too
            depth["telemetry"] = s.tele_rows + self.behind.depth()
        for name, n in self.journal.depth().items():  # records waiting in memory while DOWN
            depth[name] = depth.get(name, 0) + n
        try:
            size = file_bytes(self.cfg.path)
        except OSError:
            size = 0
        fault = s.fault if self.state == "up" else self.reason
        return OutboxStats(self.store_id, depth, oldest, s.evicted, s.dropped + self.journal.readings_dropped + self.behind.dropped, size,
                           proc_write_bytes(), self.alloc.last_used(), fault, self.wear.per_day())

    # ---- commit notifications -----------------------------------------------------------------
    def on_commit(self, callback: Callable[[RecordClass], None]) -> None:
        """Register callback(cls_min) run on the loop after each commit (the uplink wakes its sender)."""
        self._callbacks.append(callback)

    def _committed(self, cls_min: int) -> None:
        # Writer thread: hop to the loop; callbacks never run on the writer.
        if self._loop is not None and self._callbacks:
            try:
                self._loop.call_soon_threadsafe(self.wake, RecordClass(cls_min))
            except RuntimeError:
                pass

    def wake(self, cls_min: RecordClass = RecordClass.TELEMETRY) -> None:
        """Tell every registered consumer that records of class cls_min (or less urgent) were committed."""
        for cb in self._callbacks:
            try:
                cb(cls_min)
            except Exception as exc:  # noqa: BLE001 - one bad consumer must not stop the others hearing
                self.log.warning("store_commit_callback_failed", error=repr(exc))
