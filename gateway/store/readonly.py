"""The outbox read from its file while the daemon is down (CLI `status` / `queue` fallback).

Opens the database with mode=ro: no write, no lock held, no migration; a store written by a newer
gateway is still refused (its tables may mean something else).
"""

from __future__ import annotations

import sqlite3

from gateway.clock import Clock
from gateway.errors import StoreError
from gateway.store.codec import Names
from gateway.store.migrate import schema_files, user_version
from gateway.store.reader import connect_ro, file_bytes, read_depth_and_age
from gateway.store.record import OutboxStats


def open_readonly(path: str, clock: Clock | None = None) -> OutboxStats:
    """OutboxStats of the store at `path` (dropped, bytes_written and fault are the daemon's: 0 / "")."""
    clock = clock or Clock()
    try:
        conn = connect_ro(path)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path} read-only: {exc}") from exc
    try:
        version = user_version(conn)
        newest = schema_files()[-1][0]
        if version > newest:
            raise StoreError(f"{path}: schema version {version} is newer than this gateway knows ({newest})")
        if version == 0:
            raise StoreError(f"{path}: not an outbox yet (schema version 0)")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        depth, oldest = read_depth_and_age(conn, Names(), clock)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    finally:
        conn.close()
    return OutboxStats(str(meta.get("store_id", "")), depth, oldest, int(meta.get("evicted", 0)), 0,
                       file_bytes(path), 0, int(meta.get("last_seq", 0)))
