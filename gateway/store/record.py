"""The outbox's public value types: a Record as consumers fetch it, and the OutboxStats snapshot."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator
from typing import Any

import msgspec

from gateway.model import RecordClass, Stamp


class Record(msgspec.Struct, frozen=True):
    seq: int
    cls: RecordClass
    kind: str
    device: str
    stamp: Stamp
    body: dict[str, Any]  # telemetry: {"values": {...}, "via": "modbus_rtu"}


class AnyOf:
    """Membership in any of a few sets, without building their union (a fetch's skip list: the caller's
    in-flight seqs and the acks waiting for their delete, tens of thousands during a drain)."""

    __slots__ = ("sets",)

    def __init__(self, sets: Iterable[Collection[int]]) -> None:
        self.sets = tuple(sets)

    def __contains__(self, seq: object) -> bool:
        for s in self.sets:  # called once per row a fetch reads: a plain loop, not any() over a generator
            if seq in s:
                return True
        return False

    def __len__(self) -> int:  # an upper bound (the sets may overlap): enough to choose how to skip them
        return sum(len(s) for s in self.sets)

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(self.sets)


class OutboxStats(msgspec.Struct):
    store_id: str
    depth: dict[str, int]  # class name -> rows waiting (for any consumer)
    oldest_age_s: dict[str, float]  # class name -> age of the oldest waiting row (monotonic within a boot)
    evicted: int  # telemetry rows evicted by caps, TTL or purge since the store was created
    dropped: int  # telemetry rejected (disk full / writer backlog) since start
    db_bytes: int  # database + WAL file sizes
    bytes_written: int  # bytes this process wrote (from /proc/self/io), for SD wear
    last_seq: int
    fault: str = ""  # "" or e.g. "disk_full", "io_error"; while DOWN the reason (read-only, corrupt, ...)
    bytes_written_per_day: int = 0  # projected from the last hour of bytes_written (0 in the first minute)
