"""The outbox's UP/DOWN life (issue 15 item 2): a store that cannot be opened or written is DOWN with a
reason, records wait in the in-memory journal, and `run()` reopens it with backoff and commits the
journal in arrival order before anything new. Mixed into Outbox, which owns the writer and reader.

    open() ──ok──▶ UP ──writer fault (read-only, corrupt, full past the ballast, I/O)──▶ DOWN
                    ▲                                                                   │
                    └── journal committed in order ◀── reopened ◀── run(): backoff ─────┘
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import StoreError, StoreUnavailable
from gateway.model import EventKind, RecordClass
from gateway.store import faults
from gateway.store.jobs import PUT, STOP, Job
from gateway.store.journal import Entry, Journal
from gateway.store.reader import Reader
from gateway.store.writer import Writer
from gateway.supervise import Backoff

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from gateway.clock import Clock
    from gateway.config.schema import Store
    from gateway.store.behind import WriteBehind
    from gateway.store.outbox import WearMeter
    from gateway.store.seqs import SeqAlloc

RETRY_BASE_S = 1.0  # first reopen attempt after ~0.5-1 s, doubling ...
RETRY_CAP_S = 30.0  # ... to at most 30 s: a remounted or freed card is used again within half a minute
JOURNAL_CHUNK = 500  # journal records per commit when the store comes back (alarms never wait long)

OpenCallback = Callable[[], Awaitable[None] | None]


class Availability:
    # What this mixin uses of the Outbox it is mixed into (set by Outbox.__init__ before ours).
    cfg: Store
    clock: Clock
    log: FilteringBoundLogger
    consumers: dict[str, set[RecordClass]]
    store_id: str
    alloc: SeqAlloc
    behind: WriteBehind
    wear: WearMeter
    _writer: Writer
    _reader: Reader | None
    _loop: asyncio.AbstractEventLoop | None

    if TYPE_CHECKING:  # Outbox's own methods, called from here
        def _submit(self, job: Job) -> asyncio.Future[Any]: ...
        def wake(self, cls_min: RecordClass = RecordClass.TELEMETRY) -> None: ...
        def _committed(self, cls_min: int) -> None: ...

    def __init__(self) -> None:
        self.state = "down"  # "up" | "down"; health() adds "degraded" (up, on the ballast or after I/O errors)
        self.reason = "not_open"
        self.since_wall_s = self.clock.wall()
        self.journal = Journal()
        self.retry = Backoff(RETRY_BASE_S, RETRY_CAP_S)
        self.counters = {"faults": 0, "reopen_attempts": 0, "reopens": 0, "journal_committed": 0, "corrupt_moved": 0}
        self.last_error = ""
        self.moved_to = ""  # where the last corrupt database was moved
        self._down = asyncio.Event()
        self._open_callbacks: list[OpenCallback] = []
        self._arrival = 0
        self._retiring: asyncio.Task[None] | None = None
        self._cb_tasks: set[asyncio.Task[Any]] = set()
        self._journal_logged = False

    # ---- public ------------------------------------------------------------------------------
    def on_open(self, callback: OpenCallback) -> None:
        """callback() (sync or async) runs each time the store comes UP after being DOWN, once the
        journal is committed (the rule engine restores its active alarms then). Not for the first open()."""
        self._open_callbacks.append(callback)

    async def run(self) -> None:
        """Supervised task: while DOWN, reopen with capped jittered backoff (gateway.supervise.Backoff)."""
        while True:
            await self._down.wait()
            await asyncio.sleep(self.retry.next_delay())
            if self.state == "down":
                self.counters["reopen_attempts"] += 1
                await self._try_open()

    def health(self) -> dict[str, Any]:
        state = self.state
        fault = self._writer.stats.fault if state == "up" else ""
        if fault:
            state = "degraded"
        return {
            "state": state, "reason": self.reason or fault, "since_wall_s": round(self.since_wall_s, 3),
            "store_id": self.store_id, "journal": len(self.journal), "journal_max": self.journal.max_records,
            "journal_evicted": dict(self.journal.evicted), "telemetry_buffered": len(self.journal.readings),
            "telemetry_dropped": self._writer.stats.dropped + self.journal.readings_dropped,
            "last_error": self.last_error, "moved_to": self.moved_to, "seq_skipped": self.alloc.skipped,
            "telemetry_in_memory": self.behind.depth(), "telemetry_written_behind": self.behind.written,
            "bytes_written_per_day": self.wear.per_day(), "bytes_written_span_s": self.wear.span_s(), **self.counters,
        }

    # ---- going down ---------------------------------------------------------------------------
    def _next_arrival(self) -> int:
        self._arrival += 1
        return self._arrival

    def _journal_add(self, entry: Entry) -> None:
        given_up = self.journal.add(entry)
        if given_up is not None:
            level = self.log.error if given_up.cls == RecordClass.ALARM else self.log.warning
            level("store_journal_full", evicted_kind=given_up.kind, device_id=given_up.device, journal=len(self.journal))
        elif not self._journal_logged:
            self._journal_logged = True
            self.log.warning("store_journalling", reason=self.reason, kind=entry.kind)

    def _require_up(self) -> None:
        if self.state != "up":
            raise StoreUnavailable(self.reason, "records wait in the in-memory journal")

    def _writer_fault(self, exc: StoreUnavailable) -> None:
        # Writer thread: hop to the loop.
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._go_down, exc.reason, str(exc))
            except RuntimeError:
                pass

    def _go_down(self, reason: str, error: str) -> None:
        self.last_error = error[:300]
        if self.state == "down":
            self.reason = reason
            return
        self.state, self.reason, self.since_wall_s = "down", reason, self.clock.wall()
        self.counters["faults"] += 1
        self._journal_logged = False
        self.log.warning("store_down", reason=reason, error=self.last_error, path=self.cfg.path)
        if self._reader is not None:
            self._reader.close()  # no file of the store stays open (a remounted card can be repaired)
            self._reader = None
        self._retiring = asyncio.get_running_loop().create_task(self._retire(self._writer))
        self._down.set()

    async def _retire(self, writer: Writer) -> None:
        """Stop a failed writer; readings it still held go to the front of the buffer (oldest first)."""
        if writer.alive():
            try:
                writer.submit(Job(STOP))
            except StoreError:
                pass
            await asyncio.to_thread(writer.join, 10.0)
        left = list(writer.readings)
        writer.readings.clear()
        if left:
            buf = self.journal.readings
            merged = deque(left + list(buf), maxlen=buf.maxlen)
            self.journal.readings_dropped += len(left) + len(buf) - len(merged)
            self.journal.readings = merged

    # ---- coming up ----------------------------------------------------------------------------
    async def _open_first(self) -> None:
        try:
            await self._try_open()
        finally:  # also when the daemon gives up waiting on a hung card (cancelled): run() retries
            if self.state != "up":
                self._down.set()

    async def _try_open(self) -> bool:
        """Start a writer on the file, commit the journal, then UP. False (still DOWN) on failure."""
        if self._retiring is not None:
            await self._retiring
            self._retiring = None
        if self.reason == "corrupt" and not self._move_aside(self.last_error):
            return False  # found corrupt while running: the file cannot be moved aside yet
        writer = await self._start_writer()
        if writer is None and self.reason == "corrupt" and self._move_aside(self.last_error):
            writer = await self._start_writer()  # a new, empty database under a new store_id
        if writer is None:
            return False
        self._writer = writer
        self.store_id = writer.stats.store_id
        if writer.crash_gap is not None:
            # Not closed cleanly: seqs up to the reserved mark that the platform lacks were lost in the
            # crash window (readings neither acknowledged nor committed); say so, first in line.
            body = {"reason": "unclean_shutdown", "up_to_seq": writer.crash_gap, "loss_window_s": self.cfg.commit_interval_s}
            self.journal.records.appendleft(Entry(RecordClass.STATUS, "store.seq_gap", "", self.clock.now(), body, 0))
            self.log.warning("store_unclean_shutdown", up_to_seq=writer.crash_gap)
        try:
            self._reader = Reader(self.cfg.path, self.clock)
            committed = await self._commit_journal(writer)
        except (StoreError, OSError, Exception) as exc:  # noqa: BLE001 - any failure here means still DOWN
            self._fail_reopen(writer, exc)
            return False
        while self.journal.readings:  # seqs now, after the journal's records; published from memory
            self.behind.ingest(self.journal.readings.popleft())
        self._come_up(committed)
        return True

    async def _start_writer(self) -> Writer | None:
        old = self._writer
        writer = Writer(self.cfg, self.clock, self.log, self.consumers, self.alloc)
        writer.stats.dropped, writer.stats.failures = old.stats.dropped, old.stats.failures
        writer.on_commit = self._committed
        writer.on_fault = self._writer_fault
        try:
            Path(self.cfg.path).parent.mkdir(parents=True, exist_ok=True)
            await asyncio.wrap_future(writer.start())
        except Exception as exc:  # noqa: BLE001 - classified and reported: the store is DOWN, not the daemon
            reason = faults.classify(exc, self.cfg.path)
            first = self.state == "up" or self.reason != reason or self.reason == "not_open"
            self.state, self.last_error = "down", str(exc)[:300]
            if first:
                self.reason, self.since_wall_s = reason, self.clock.wall()
                self.log.warning("store_down", reason=reason, error=self.last_error, path=self.cfg.path)
            return None
        return writer

    def _move_aside(self, error: str) -> bool:
        try:
            self.moved_to = faults.move_aside(self.cfg.path, self.clock.wall())
        except OSError as exc:
            self.log.error("store_corrupt_move_failed", path=self.cfg.path, error=str(exc))
            return False
        self.counters["corrupt_moved"] += 1
        self.behind.unsequence()  # the new database starts its seqs again under a new store_id
        self.log.error("store_corrupt_moved_aside", path=self.cfg.path, moved_to=self.moved_to, error=error[:200])
        body = {"kind": str(EventKind.FAULT), "code": "store_corrupt", "source": "gateway",
                "moved_to": Path(self.moved_to).name, "error": error[:200]}
        # First in the new store (arrival 0): it explains the new store_id.
        self.journal.records.appendleft(Entry(RecordClass.EVENT, "event.fault", "", self.clock.now(), body, 0))
        return True

    async def _commit_journal(self, writer: Writer) -> int:
        committed = 0
        records = self.journal.records
        while records:
            batch = [records[i] for i in range(min(JOURNAL_CHUNK, len(records)))]

            def put_batch(conn: sqlite3.Connection, batch: list[Entry] = batch) -> list[int]:
                return [writer.add_record(conn, e.cls, e.kind, e.device, e.stamp, e.body) for e in batch]

            await self._submit(Job(PUT, put_batch, durable=True))
            for _ in batch:  # only now: a failed commit leaves the journal whole
                records.popleft()
            committed += len(batch)
        return committed

    def _fail_reopen(self, writer: Writer, exc: BaseException) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.reason, self.last_error = faults.classify(exc, self.cfg.path), str(exc)[:300]
        self.log.debug("store_reopen_failed", reason=self.reason, error=self.last_error)
        self._retiring = asyncio.get_running_loop().create_task(self._retire(writer))

    def _come_up(self, committed: int) -> None:
        was = self.reason
        down_s = self.clock.wall() - self.since_wall_s
        self.state, self.reason, self.since_wall_s = "up", "", self.clock.wall()
        self._down.clear()
        self.retry.reset()
        self.behind.start()
        self.behind.assign()
        if was == "not_open":
            self.log.info("store_opened", path=self.cfg.path, store_id=self.store_id, last_seq=self._writer.stats.last_seq,
                          telemetry_rows=self._writer.stats.tele_rows, journal_committed=committed)
            if not committed:
                return
        else:
            self.counters["reopens"] += 1
            self.log.info("store_up", was=was, down_s=round(down_s, 1), journal_committed=committed, store_id=self.store_id)
        self.counters["journal_committed"] += committed
        if committed:
            self.wake(RecordClass.ALARM)  # the uplinks fetch what the journal held
        if was == "not_open":
            return
        for cb in self._open_callbacks:
            try:
                res = cb()
            except Exception as exc:  # noqa: BLE001 - one bad listener must not keep the store down
                self.log.warning("store_open_callback_failed", error=repr(exc))
                continue
            if inspect.isawaitable(res):
                task = asyncio.ensure_future(res)
                self._cb_tasks.add(task)
                task.add_done_callback(self._cb_tasks.discard)

    async def _close_availability(self) -> None:
        if self.state == "down" and (len(self.journal) or self.journal.readings):
            await self._try_open()  # one last chance for what the journal holds
        if self.state == "down":
            if self._retiring is not None:
                await self._retiring
                self._retiring = None
            if len(self.journal) or self.journal.readings:
                self.log.error("store_journal_lost", reason=self.reason, records=len(self.journal),
                               readings=len(self.journal.readings))
