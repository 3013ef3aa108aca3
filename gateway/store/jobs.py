"""What the outbox writer thread works on: jobs handed over by coroutines, the state of one transaction,
and the counters it publishes (read by stats() without a lock: each is a single int/str assignment)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PUT, TRANSACT, ACK, CALL, STOP, WAKE = range(6)
BATCHED = (PUT, ACK)  # consecutive jobs of these kinds share one transaction


@dataclass
class Job:
    kind: int
    fn: Callable[[sqlite3.Connection], Any] | None = None
    durable: bool = False
    reply: Callable[[Any, BaseException | None], None] = lambda result, exc: None


@dataclass
class Tx:
    """One writer transaction: seqs handed out and counter changes, applied only if it commits."""

    seq: int  # the last seq this transaction took (0: none)
    names_mark: int
    taken: list[int] = field(default_factory=list)  # seqs this transaction took (given back on rollback)
    reserve_to: int = 0  # commit meta.seq_reserved = this with the transaction
    tele_delta: int = 0
    evicted: int = 0
    dirty: bool = False
    cls_min: int | None = None

    def touched(self, cls: int) -> None:
        self.dirty = True
        self.cls_min = cls if self.cls_min is None else min(self.cls_min, cls)


@dataclass
class Counters:
    last_seq: int = 0
    tele_rows: int = 0
    evicted: int = 0
    dropped: int = 0
    rebased: int = 0
    commits: int = 0
    fault: str = ""
    store_id: str = ""
    failures: dict[str, int] = field(default_factory=dict)
