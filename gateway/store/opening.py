"""Opening the outbox database: connection pragmas, meta facts (store_id, seq high-water), consumer bits.

Runs once in the writer thread before it takes work; everything here is quick on an existing store
(no table scans) so the daemon starts without waiting, whatever the backlog.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

from gateway.errors import StoreError
from gateway.model import RecordClass
from gateway.store.caps import checkpoint_due_bytes, wal_budget_bytes
from gateway.store.migrate import migrate

# Issue 17 (docs/store.md "Page size and checkpoints"): a commit writes every page it touches whole, as a
# WAL frame of page + 24 B. At 4,096 B each frame straddles two 4 KiB filesystem blocks and a group commit
# of 20 readings rewrote ~3.5 blocks; at 512 B the same commit touches ~1.8 (measured, /proc/PID/io).
PAGE_SIZE = 512
# An existing database of another page size is rebuilt at open (VACUUM) only while this small: the
# rebuild rewrites the whole file once and needs as much free space again, which a card holding a big
# backlog may not have; a larger file keeps its page size until it has drained.
CONVERT_MAX_BYTES = 16 * 1024 * 1024
WAL_FRAME_HEADER = 24
MAX_CONSUMERS = 62  # bits of `pending`, a signed 64-bit INTEGER


def connect(path: str, max_bytes: int) -> sqlite3.Connection:
    """The writer's read-write connection: WAL, bounded WAL file, autocommit mode (we own BEGIN/COMMIT)."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        convert_page_size(conn)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open outbox {path}: {exc}") from exc
    if mode != "wal":
        conn.close()
        raise StoreError(f"outbox {path}: journal_mode is {mode!r}, WAL is required")
    # Debian's SQLite is built with SECURE_DELETE: every deleted row is zeroed and every freed page written
    # out again, so draining a backlog rewrote each page it had written (issue 17). FAST zeroes deleted
    # bytes only in pages a commit writes anyway; freed pages are no longer written.
    conn.execute("PRAGMA secure_delete=FAST")
    wal_budget = wal_budget_bytes(max_bytes)
    # The WAL file is truncated to this after each checkpoint (reliability §0.11: caps cover DB + WAL).
    conn.execute(f"PRAGMA journal_size_limit={wal_budget}")
    # The only routine checkpoint: SQLite's own, after the commit that takes the WAL past this many frames.
    conn.execute(f"PRAGMA wal_autocheckpoint={max(16, checkpoint_due_bytes(max_bytes) // (PAGE_SIZE + WAL_FRAME_HEADER))}")
    try:
        migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot prepare outbox {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def convert_page_size(conn: sqlite3.Connection) -> bool:
    """Rebuild a small database written with another page size (an older gateway's 4,096) at PAGE_SIZE.

    The page size of a WAL database cannot change, so this leaves WAL for a rollback journal, VACUUMs
    (atomic: a crash leaves the old file whole) and the caller enters WAL again. Any failure (another
    process has the file open, read-only card, no room for the copy) leaves the file as it was: the
    store works at any page size, only writing more per commit. True when the file was rebuilt."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])  # reads the header of an existing file
    size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    if pages == 0:  # a new file: the size takes effect when its first page is written
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        return False
    if size == PAGE_SIZE or pages * size > CONVERT_MAX_BYTES:
        return False
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("VACUUM")
    except sqlite3.Error:
        return False
    return int(conn.execute("PRAGMA page_size").fetchone()[0]) == PAGE_SIZE


def meta_get(conn: sqlite3.Connection, key: str, default: Any = None) -> Any:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else row[0]


def meta_set(conn: sqlite3.Connection, **values: Any) -> None:
    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))


def init_meta(conn: sqlite3.Connection, wall_s: float) -> None:
    """First open: mint the store_id (a new database means a new seq space for the platform's dedupe)."""
    defaults = {"store_id": str(uuid.uuid4()), "last_seq": 0, "tele_rows": 0, "evicted": 0,
                "boot_id": "", "boot_first_seq": 1, "created_wall_s": wall_s}
    conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", list(defaults.items()))


def last_seq(conn: sqlite3.Connection) -> int:
    """The seq high-water mark: meta is written in every transaction that hands out or deletes seqs;
    max(seq) of the tables is only a belt to the braces."""
    seqs = [int(meta_get(conn, "last_seq", 0))]
    for table in ("record", "telemetry"):
        seqs.append(conn.execute(f"SELECT coalesce(max(seq), 0) FROM {table}").fetchone()[0])
    return max(seqs)


def class_bits(classes: set[RecordClass]) -> int:
    return sum(1 << int(c) for c in classes)


def clear_consumer_bit(conn: sqlite3.Connection, bit: int, classes: int) -> None:
    """A consumer was removed or wants fewer classes: it is owed nothing more of those classes."""
    rec = [c for c in (RecordClass.ALARM, RecordClass.EVENT, RecordClass.STATUS) if classes & (1 << c)]
    if rec:
        marks = ",".join(str(int(c)) for c in rec)
        conn.execute(f"UPDATE record SET pending = pending & ~{bit} WHERE pending & {bit} AND cls IN ({marks})")
        conn.execute("DELETE FROM record WHERE pending = 0")
    if classes & (1 << RecordClass.TELEMETRY):
        conn.execute(f"UPDATE telemetry SET pending = pending & ~{bit} WHERE pending & {bit}")
        conn.execute("DELETE FROM telemetry WHERE pending = 0")
        meta_set(conn, tele_rows=conn.execute("SELECT count(*) FROM telemetry").fetchone()[0])


def sync_consumers(conn: sqlite3.Connection, consumers: dict[str, set[RecordClass]], log: Any) -> dict[str, int]:
    """Match the consumer table to the configuration; return name -> bit. Inside a transaction.

    A consumer that gains a class is owed only records committed from now on."""
    stored = {name: (bit, classes) for name, bit, classes in conn.execute("SELECT name, bit, classes FROM consumer")}
    for name, (bit, classes) in stored.items():
        wanted = class_bits(consumers.get(name, set()))
        dropped = classes & ~wanted
        if dropped:
            log.info("store_consumer_narrowed", consumer=name, classes_dropped=dropped)
            clear_consumer_bit(conn, bit, dropped)
        if name not in consumers:
            conn.execute("DELETE FROM consumer WHERE name = ?", (name,))
    used = {bit for name, (bit, _) in stored.items() if name in consumers}
    bits: dict[str, int] = {}
    for name, classes in sorted(consumers.items()):
        if name in stored:
            bit = stored[name][0]
        else:
            free = [b for b in range(MAX_CONSUMERS) if (1 << b) not in used]
            if not free:
                raise StoreError(f"more than {MAX_CONSUMERS} outbox consumers")
            bit = 1 << free[0]
            used.add(bit)
        conn.execute("INSERT OR REPLACE INTO consumer (name, bit, classes) VALUES (?, ?, ?)", (name, bit, class_bits(classes)))
        bits[name] = bit
    return bits


def ensure_parent(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
