"""An in-memory stand-in for the Outbox contract (gateway/store/outbox.py), for uplink unit tests only.

Integration tests use the real Outbox. The nonce table is a real SQLite database running the real
migration file, so the nonce cache's SQL is exercised.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import msgspec

from gateway.model import RecordClass, Stamp
from gateway.store.outbox import OutboxStats, Record

MIGRATION = Path(__file__).resolve().parents[2] / "gateway" / "store" / "schema" / "0020_nonces.sql"


class FakeOutbox:
    def __init__(self, db_path: str = ":memory:") -> None:
        self.store_id = str(uuid.uuid4())
        self.rows: dict[int, Record] = {}
        self.last_seq = 0
        self.acked: list[int] = []
        self._callbacks: list[Any] = []
        self.conn = sqlite3.connect(db_path)
        self.conn.executescript(MIGRATION.read_text())

    def on_commit(self, callback: Any) -> None:
        self._callbacks.append(callback)

    def add(self, cls: RecordClass, kind: str, device: str, stamp: Stamp, body: dict[str, Any]) -> int:
        self.last_seq += 1
        self.rows[self.last_seq] = Record(self.last_seq, cls, kind, device, stamp, body)
        for cb in self._callbacks:
            cb(cls)
        return self.last_seq

    def fetch(self, consumer: str, limit: int, exclude: Any = (), classes: Any = None, after: int = 0) -> list[Record]:
        skip = set(exclude)
        rows = sorted((r for s, r in self.rows.items() if s not in skip and (r.cls != RecordClass.TELEMETRY or s > after)),
                      key=lambda r: (r.cls, r.seq))
        return rows[:limit]

    async def ack(self, consumer: str, seqs: Any) -> None:
        for s in seqs:
            self.rows.pop(s, None)
            self.acked.append(s)

    async def transact(self, fn: Any, durable: bool = True) -> Any:
        with self.conn:
            return fn(self.conn)

    async def rebase_unsynced(self) -> int:
        return 0

    def stats(self) -> OutboxStats:
        depth: dict[str, int] = {}
        for r in self.rows.values():
            depth[r.cls.name.lower()] = depth.get(r.cls.name.lower(), 0) + 1
        return OutboxStats(self.store_id, depth, {}, 0, 0, 0, 0, self.last_seq)


def reading_record(seq: int, device: str, stamp: Stamp, values: dict[str, Any]) -> Record:
    return Record(seq, RecordClass.TELEMETRY, "reading", device, stamp, {"values": values})


def as_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)
