"""Bounds of the outbox: telemetry row cap, telemetry TTL, bytes of database + WAL together.

Only telemetry is ever evicted, always the oldest first (lowest seq); alarms, events and status rows
are never touched here. Every function runs inside the writer's transaction and returns rows deleted.
"""

from __future__ import annotations

import os
import sqlite3

from gateway.store.codec import decode_tele

EVICT_LOW_WATER = 0.97  # evict bytes down to 97 % of the cap: not on every commit, not much more than needed
TTL_SCAN_CHUNK = 2000
MIN_EVICT_ROWS = 256


def wal_budget_bytes(max_bytes: int) -> int:
    """Share of max_bytes the WAL may take between checkpoints (reliability §0.11: 4 MB WAL, 4 kB DB)."""
    return max(64 * 1024, min(max_bytes // 8, 4 * 1024 * 1024))


def checkpoint_due_bytes(max_bytes: int) -> int:
    """WAL a checkpoint waits for (issue 17): a checkpoint copies every page the WAL holds once, so
    checkpointing after ~1 MiB instead of every harden_interval_s copies a leaf once after it filled,
    not once per pass while it fills (docs/store.md "Page size and checkpoints")."""
    return min(wal_budget_bytes(max_bytes) // 4, 1024 * 1024)


def wal_bytes(db_path: str) -> int:
    try:
        return os.path.getsize(db_path + "-wal")
    except OSError:
        return 0


def used_page_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of pages holding data (free pages are reused before the file grows, so they do not count)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def evict_oldest(conn: sqlite3.Connection, n: int) -> int:
    """Delete the n oldest telemetry rows."""
    if n <= 0:
        return 0
    row = conn.execute("SELECT seq FROM telemetry ORDER BY seq LIMIT 1 OFFSET ?", (n - 1,)).fetchone()
    if row is None:
        return conn.execute("DELETE FROM telemetry").rowcount
    return conn.execute("DELETE FROM telemetry WHERE seq <= ?", (row[0],)).rowcount


def evict_older_than(conn: sqlite3.Connection, cutoff_wall_s: float) -> int:
    """Delete telemetry from the head (commit order) while its read-time wall stamp is before the cutoff.

    Walks from the oldest row and stops at the first younger one: no index on time is written for
    every reading, and rows are dropped strictly in seq order (never a hole in the middle)."""
    deleted = 0
    while True:
        rows = conn.execute("SELECT seq, body FROM telemetry ORDER BY seq LIMIT ?", (TTL_SCAN_CHUNK,)).fetchall()
        last = None
        for seq, body in rows:
            if decode_tele(body).wall_s >= cutoff_wall_s:
                break
            last = seq
        if last is None:
            return deleted
        deleted += conn.execute("DELETE FROM telemetry WHERE seq <= ?", (last,)).rowcount
        if last != rows[-1][0]:
            return deleted


def evict_for_bytes(conn: sqlite3.Connection, page_budget_bytes: int, tele_rows: int) -> int:
    """Evict oldest telemetry until the data pages fit in page_budget_bytes (down to the low-water mark)."""
    used = used_page_bytes(conn)
    if used <= page_budget_bytes:
        return 0
    target = int(page_budget_bytes * EVICT_LOW_WATER)
    deleted = 0
    for _ in range(64):  # bounded: each round removes at least MIN_EVICT_ROWS rows or the table empties
        left = tele_rows - deleted
        if used <= target or left <= 0:
            break
        # Over-estimates bytes per telemetry row (other tables count too), so each round deletes
        # no more than needed and the loop closes in on the target.
        per_row = used / max(1, left)
        n = max(MIN_EVICT_ROWS, int((used - target) / per_row))
        got = evict_oldest(conn, min(n, left))
        if got == 0:
            break
        deleted += got
        used = used_page_bytes(conn)
    return deleted
