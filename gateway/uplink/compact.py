"""Telemetry batch v2 (issue 17, docs/uplink.md "Telemetry batch v2"): stream tables sent only when they
change, rows of positional, delta-coded, decimal-scaled values.

Where v1 spent its bytes (measured, 20 hydrant monitors, 5 values, 200 readings/s, ~40 per batch): ~9 B
per reading on the per-batch device and key tables, ~42 B on the row, of which 10 B key indexes, 3 B
clock_synced and 2-3 B the seq and ts offsets from the batch start. v2 names a table by hash (the table
goes inline only in a session's first batch using it, and retained on `cg/v1/<gw>/table`), drops the key
indexes (a stream fixes its keys and their order), makes clock_synced per batch, codes seq and ts as
deltas from the previous row, and sends a float as the integer m of m / 10**e (e per key in the table).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.model import RecordClass
from gateway.platform.tables import table_hash
from gateway.uplink.wire import Envelope, Message, reading_values, wall_ms

VERSION = 2
MAX_EXP = 6  # decimals kept as a scaled integer; a value needing more goes literal (its key's e = 0)
SAFE_INT = 2**53  # beyond this a JSON number is not an exact integer in every platform language
TABLE_MAX_BYTES = 8192  # ~270 streams; a table that would grow past this starts afresh from the current batch's streams
HISTORY = 32  # recent tables kept for the `table` command (a platform that missed one asks by hash)
_ENC = msgspec.json.Encoder()
POW10 = tuple(10**e for e in range(MAX_EXP + 1))

Stream = tuple[str, tuple[str, ...]]  # (device, value keys in row order: sorted)


def decimals(v: Any) -> int | None:
    """Decimal exponent a number needs to travel as an exact integer (0 for ints); None if it cannot."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, int):
        return 0 if abs(v) * 10**MAX_EXP < SAFE_INT else None
    if not math.isfinite(v):
        return None
    for e in range(MAX_EXP + 1):
        m = round(v * 10**e)
        if abs(m) >= SAFE_INT:
            return None
        if m / 10**e == v:
            return e
    return None


def widen(e: int | None, v: Any) -> int:
    """A key's exponent after seeing `v`: a float makes a new key scaled (e >= 1), widening only grows e,
    anything that does not fit makes the key literal (0) for the table's life. Monotone: no churn."""
    if e == 0:
        return 0  # literal for good: no need to look at v
    if e is not None and type(v) is float and abs(v) < SAFE_INT:  # the common case: v fits the key's exponent
        # (abs() < SAFE_INT is False for nan and inf, and keeps v x 10**6 far from overflowing to inf)
        m = round(v * POW10[e])
        if abs(m) < SAFE_INT and m / POW10[e] == v:
            return e  # then decimals(v) <= e, and max(e, decimals(v)) is e
    d = decimals(v)
    if e is None:  # a new key
        return max(1, d) if d is not None and isinstance(v, float) else 0
    if d is None:
        return 0
    return max(e, d)


class StreamTable:
    """One immutable table: keys (sorted), their exponents, streams (sorted) and the hash naming them."""

    def __init__(self, exps: dict[str, int], streams: set[Stream]) -> None:
        self.keys = sorted(exps)
        self.exps = [exps[k] for k in self.keys]
        kidx = {k: i for i, k in enumerate(self.keys)}
        self.streams = sorted(streams)
        self.index = {st: i for i, st in enumerate(self.streams)}
        self.exp_of = exps
        shapes: list[list[Any]] = [[dev, [kidx[k] for k in names]] for dev, names in self.streams]
        self.doc: dict[str, Any] = {"k": self.keys, "e": self.exps, "s": shapes}
        self.h = table_hash(self.keys, self.exps, shapes)
        self.size = len(_ENC.encode(self.doc))


class TableBook:
    """The current table, recent ones by hash, and which were announced in this MQTT session."""

    def __init__(self) -> None:
        self.current: StreamTable | None = None
        self.recent: OrderedDict[str, StreamTable] = OrderedDict()
        self.announced: set[str] = set()

    def plan(self, readings: Sequence[tuple[str, dict[str, Any]]]) -> StreamTable:
        """The table for these readings: the current one if it covers them, else a grown (or fresh) one."""
        cur = self.current
        table = self._grown(readings, dict(cur.exp_of) if cur else {}, set(cur.streams) if cur else set(), cur)
        if table.size > TABLE_MAX_BYTES and cur is not None:
            table = self._grown(readings, {}, set(), None)
        return table

    @staticmethod
    def _grown(readings: Sequence[tuple[str, dict[str, Any]]], exps: dict[str, int], streams: set[Stream],
               cur: StreamTable | None) -> StreamTable:
        changed = cur is None
        for device, values in readings:
            st = (device, tuple(sorted(values)))
            if st not in streams:
                streams.add(st)
                changed = True
            for k, v in values.items():
                e = widen(exps.get(k), v)
                if e != exps.get(k):
                    exps[k] = e
                    changed = True
        return StreamTable(exps, streams) if changed or cur is None else cur

    def adopt(self, table: StreamTable) -> None:
        self.current = table
        self.recent[table.h] = table
        self.recent.move_to_end(table.h)
        while len(self.recent) > HISTORY:
            self.recent.popitem(last=False)


class CompactBatcher:
    """TelemetryBatcher's v2 twin: take() builds one batch; pop_table() the retained table message to
    publish before it (when the batch is the session's first to use its table)."""

    def __init__(self, envelope: Envelope, max_readings: int, max_bytes: int) -> None:
        self.env = envelope
        self.max_readings = max_readings
        self.max_bytes = max_bytes
        self.book = TableBook()
        self._table_msg: Message | None = None

    def session_start(self) -> None:
        """A new MQTT session: the platform may have lost the broker's state, so tables go again on first use."""
        self.book.announced.clear()

    def pop_table(self) -> Message | None:
        msg, self._table_msg = self._table_msg, None
        return msg

    def table_doc(self, h: str = "") -> dict[str, Any] | None:
        """A recent table by hash (the current one for ""), as the `table` command returns it."""
        table = self.book.recent.get(h) if h else self.book.current
        return None if table is None else {"h": table.h, **table.doc}

    def take(self, records: Sequence[Any]) -> Message:
        """One batch from the head of `records` (telemetry, FIFO); always at least one reading."""
        first = records[0]
        boot_id, synced = first.stamp.boot_id, first.stamp.clock_synced
        picked = []
        for rec in records[: self.max_readings]:
            if rec.cls != RecordClass.TELEMETRY or rec.stamp.boot_id != boot_id or rec.stamp.clock_synced != synced:
                break  # one boot_id and one clock_synced per batch (both are in the header)
            picked.append(rec)
        values = [reading_values(r.body) for r in picked]  # once per reading: the plan and the rows use them
        while True:
            table = self.book.plan([(r.device, v) for r, v in zip(picked, values)])
            payload = self._encode(picked, values, table)
            if len(payload) <= self.max_bytes or len(picked) == 1:
                break
            picked = picked[: max(1, len(picked) * 3 // 4)]  # rare (a backlog of wide readings): cut and redo
            values = values[: len(picked)]
        self.book.adopt(table)
        if table.h not in self.book.announced:
            self.book.announced.add(table.h)
            doc = self.env.head(boot_id)
            doc.update(v=VERSION, h=table.h, **table.doc)
            self._table_msg = Message(self.env.topics.table, _ENC.encode(doc), retain=True)
        return Message(self.env.topics.telemetry, payload, tuple(r.seq for r in picked), RecordClass.TELEMETRY)

    def _encode(self, picked: list[Any], values_of: list[dict[str, Any]], table: StreamTable) -> bytes:
        first = picked[0]
        seq, ts = first.seq - 1, wall_ms(first.stamp)
        doc = self.env.head(first.stamp.boot_id)
        doc.update(v=VERSION, seq0=first.seq, t0_ms=ts, cs=int(first.stamp.clock_synced), h=table.h)
        if table.h not in self.book.announced:
            doc["tab"] = table.doc
        rows = []
        for rec, values in zip(picked, values_of):
            names = tuple(sorted(values))
            t = wall_ms(rec.stamp)
            row: list[Any] = [rec.seq - seq - 1, table.index[(rec.device, names)], t - ts]
            for k in names:
                e = table.exp_of[k]
                row.append(round(values[k] * 10**e) if e else values[k])
            rows.append(row)
            seq, ts = rec.seq, t
        doc["r"] = rows
        return _ENC.encode(doc)
