"""Outbox API (CONTRACT: the store helper implements it; uplink, rules and GB 26875 code against it).

Threading: one writer thread owns the read-write connection (group commit, WAL, synchronous=FULL on
the alarm/event path); every public coroutine is called from the asyncio loop and never blocks it.
Readers (uplink fetch, CLI) use their own connections.

Records:
  seq      one counter per store across all classes, strictly increasing in commit order, never reused
  cls      RecordClass (ALARM=0, EVENT=1, STATUS=2, TELEMETRY=3); also the priority
  kind     short string: "alarm.raised", "event.smoke", "reading", ...
  device   device id or ""
  stamp    gateway.model.Stamp taken at read time (re-based before sending if taken unsynced)
  body     dict (JSON-able), the record's payload as the wire will carry it

Consumers: named uplinks ("mqtt", later "gb26875"). A record is deleted once every consumer that
wants its class has acknowledged it. Each consumer has its own progress.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec

from gateway.model import Reading, RecordClass, Stamp

T = TypeVar("T")


class Record(msgspec.Struct, frozen=True):
    seq: int
    cls: RecordClass
    kind: str
    device: str
    stamp: Stamp
    body: dict[str, Any]


class OutboxStats(msgspec.Struct):
    store_id: str
    depth: dict[str, int]  # class name -> rows waiting (for any consumer)
    oldest_age_s: dict[str, float]  # class name -> age of the oldest waiting row (monotonic)
    evicted: int  # telemetry rows evicted by caps or TTL since the store was created
    dropped: int  # telemetry rejected (disk full / writer backlog) since start
    db_bytes: int  # database + WAL file sizes
    bytes_written: int  # bytes this process wrote (from /proc/self/io), for SD wear
    last_seq: int
    fault: str = ""  # "" or e.g. "disk_full", "io_error"


class Outbox:
    def __init__(self, cfg: Any, clock: Any, log: Any, consumers: dict[str, set[RecordClass]]) -> None:
        """cfg: gateway.config.schema.Store. consumers: name -> classes it wants, e.g. {"mqtt": set(RecordClass)}."""
        raise NotImplementedError

    store_id: str  # random UUID minted when the database is created (idempotency key part)

    async def open(self) -> None:
        """Open/create the DB, run migrations (PRAGMA user_version; refuse a newer schema with StoreError),
        make the ballast file, start the writer thread. Never waits for the uplink."""

    async def close(self) -> None:
        """Flush pending telemetry (one last group commit), checkpoint, stop the writer thread."""

    async def put(self, cls: RecordClass, kind: str, device: str, stamp: Stamp, body: dict[str, Any]) -> int:
        """Durably commit one alarm/event/status record (synchronous=FULL transaction) and return its seq.
        Returns only after the commit; raises StoreError if it cannot commit (after using the ballast)."""

    def put_reading(self, reading: Reading) -> None:
        """Queue a reading for the next group commit (<= commit_interval_s). Never blocks; never merges.
        When the store is full or the writer backlog is over its bound, the reading is dropped and counted."""

    async def transact(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """Run fn(conn) inside one writer transaction (FULL when durable) and return its result.
        For stages that keep their own tables (alarm state, nonce cache) and want them atomic with records:
        call `Outbox.add_record(conn, ...)` inside fn to enqueue a record in the same transaction."""

    def add_record(self, conn: sqlite3.Connection, cls: RecordClass, kind: str, device: str, stamp: Stamp, body: dict[str, Any]) -> int:
        """Inside `transact`: insert a record, assign and return its seq."""

    def fetch(self, consumer: str, limit: int, exclude: Iterable[int] = (), classes: Iterable[RecordClass] | None = None) -> list[Record]:
        """Records this consumer has not acknowledged, ORDER BY cls, seq; skipping `exclude` (in flight).
        Uses a reader connection; safe from the loop thread (fast, indexed)."""

    async def ack(self, consumer: str, seqs: Iterable[int]) -> None:
        """Mark delivered for this consumer; rows every consumer acked are deleted (in the writer)."""

    def rebase_unsynced(self) -> int:
        """Re-base wall times of unsynced records from this boot once the clock syncs (called by the writer
        or uplink when clock.synced() flips). Returns rows re-based."""

    def stats(self) -> OutboxStats:
        """Cheap snapshot for status and the CLI."""

    def wake(self) -> None:
        """Called by the store after each commit: a registered callback (the uplink) is notified that
        new records exist. Register with `on_commit(callback)` where callback(cls_min: RecordClass)."""
