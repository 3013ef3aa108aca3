"""Periodic upkeep run by the outbox writer between jobs: telemetry TTL, hardening checkpoint,
ballast recovery after a full disk, and re-basing unsynced stamps once the clock syncs.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.errors import StoreError
from gateway.store import caps, opening
from gateway.store.rebase import rebase_records, rebase_telemetry_chunk

if TYPE_CHECKING:
    from gateway.store.writer import Writer

LOW_FREE_BYTES = 64 * 1024  # less than this free beside a present ballast: the card is full
SYNC_CHECK_INTERVAL_S = 1.0  # Clock.synced() may be an adjtimex call: not on every loop turn


class Maintenance:
    def __init__(self, writer: Writer) -> None:
        self.w = writer
        self.next_due = time.monotonic() + writer.cfg.harden_interval_s
        self._first_seq = 1  # first seq committed in this boot (meta boot_first_seq)
        self._rebase_next: int | None = None
        self._rebase_end = 0
        self._pass_start = 0
        self._failed: set[str] = set()
        self._synced_seen = False
        self._next_sync_check = 0.0

    def opened(self, boot_first_seq: int) -> None:
        self._first_seq = boot_first_seq
        self._ballast()

    def busy(self) -> bool:
        """A re-base pass is under way: the writer loops without waiting until it is done."""
        return self._rebase_next is not None

    def step(self, now: float, final: bool = False) -> None:
        if not self._synced_seen and now >= self._next_sync_check:
            self._next_sync_check = now + SYNC_CHECK_INTERVAL_S
            if self.w.clock.synced():
                self._synced_seen = True
                self._guarded(self._start_rebase)
        if self._rebase_next is not None and not final:
            self._guarded(self._rebase_chunk)
        if final or now >= self.next_due:
            self.next_due = now + self.w.cfg.harden_interval_s
            self.run(final)

    def run(self, final: bool = False) -> None:
        """TTL, counters, a checkpoint if the WAL outgrew its share (always at close), then the ballast."""
        self._guarded(self.expire)
        if not final:  # at close the outbox persists them itself, with the seqs given back
            self._guarded(self.w.persist_counters)
        self._guarded(lambda: self.checkpoint(truncate=final, routine=not final))
        self._ballast()

    def _guarded(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (sqlite3.Error, StoreError) as exc:
            step = getattr(fn, "__name__", "?")
            level = self.w.log.debug if step in self._failed else self.w.log.warning  # first WARNING, repeats DEBUG
            self._failed.add(step)
            level("store_maintenance_failed", step=step, error=str(exc))
        else:
            self._failed.discard(getattr(fn, "__name__", "?"))

    # ---- TTL and purge --------------------------------------------------------------------------
    def expire(self) -> int:
        return self.purge(self.w.cfg.telemetry_ttl_s, "ttl")

    def purge(self, older_than_s: float, why: str) -> int:
        cutoff = self.w.clock.wall() - older_than_s

        def body(conn: sqlite3.Connection) -> int:
            n = caps.evict_older_than(conn, cutoff)
            self.w.count_evicted(n, why)
            return n

        return self.w.transaction(body, durable=False)

    # ---- hardening ----------------------------------------------------------------------------
    def checkpoint(self, truncate: bool = False, routine: bool = False) -> None:
        """Checkpoint the WAL. TRUNCATE when it outgrew its share of max_bytes (caps are on DB + WAL).

        A routine pass (each harden_interval_s) leaves a WAL within its share alone: SQLite's
        autocheckpoint copies it once it holds caps.checkpoint_due_bytes (opening.connect), so each
        page is copied into the database about once, not once per pass (issue 17). Committed data is
        as safe in the WAL (synchronous=FULL) as in the database."""
        w = self.w
        assert w.conn is not None
        if not truncate and caps.wal_bytes(w.path) > caps.wal_budget_bytes(w.cfg.max_bytes):
            truncate = True
        if routine and not truncate:
            return
        w.conn.execute(f"PRAGMA wal_checkpoint({'TRUNCATE' if truncate else 'PASSIVE'})")

    # ---- ballast --------------------------------------------------------------------------------
    def _ballast(self) -> None:
        w, s = self.w, self.w.stats
        if s.fault == "disk_full":
            if not w.ballast.room_to_recover():
                return
            try:
                w.ballast.make()
            except OSError as exc:
                w.log.debug("store_ballast_failed", error=str(exc))
                return
            s.fault = ""
            w.log.info("store_disk_recovered", free_bytes=w.ballast.free_bytes(), ballast_bytes=w.ballast.size_bytes)
            return
        if not s.fault and w.ballast.present() and w.ballast.free_bytes() < LOW_FREE_BYTES:
            # With write-behind a healthy uplink means almost no commits, so a full card would only be
            # found by the next alarm's commit: look at the free space instead (each harden_interval_s).
            w.ballast.release()
            s.fault = "disk_full"
            w.log.warning("store_disk_full", ballast_released=True, free_bytes=w.ballast.free_bytes(), found_by="free_space_check")
            return
        if s.fault or w.ballast.present():
            return
        try:
            w.ballast.make()
        except OSError as exc:
            s.fault = "disk_full"  # not even the reserve fits: alarms only, from now on
            w.log.warning("store_ballast_failed", error=str(exc), ballast_bytes=w.ballast.size_bytes)

    # ---- re-basing ----------------------------------------------------------------------------
    def _start_rebase(self) -> None:
        self._pass_start = self.w.stats.rebased
        self._rebase_next = self._first_seq
        self._rebase_end = self.w.stats.last_seq
        n = self.w.transaction(lambda conn: rebase_records(conn, self.w.clock, self._first_seq), durable=True)
        self.w.stats.rebased += n

    def _rebase_chunk(self) -> None:
        assert self._rebase_next is not None
        start, end = self._rebase_next, self._rebase_end

        def body(conn: sqlite3.Connection) -> tuple[int, int | None]:
            n, nxt = rebase_telemetry_chunk(conn, self.w.names, self.w.clock, start, end)
            if nxt is None:
                # Everything of this boot up to `end` is synced now; rows after it were stamped synced.
                opening.meta_set(conn, boot_first_seq=end + 1)
            return n, nxt

        n, self._rebase_next = self.w.transaction(body, durable=False)
        self.w.stats.rebased += n
        if self._rebase_next is None:
            self._first_seq = end + 1
            if self.w.stats.rebased > self._pass_start:
                self.w.log.info("store_stamps_rebased", rows=self.w.stats.rebased - self._pass_start)

    def rebase_now(self) -> int:
        """Finish any re-base pass at once (the explicit Outbox.rebase_unsynced); rows re-based."""
        before = self.w.stats.rebased
        if not self._synced_seen and self.w.clock.synced():
            self._synced_seen = True
            self._start_rebase()
        while self._rebase_next is not None:
            self._rebase_chunk()
        return self.w.stats.rebased - before
