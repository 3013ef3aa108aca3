"""Schema migrations of the outbox database: numbered SQL files in gateway/store/schema/, applied in order.

Like zigpy's appdb_schemas, PRAGMA user_version holds the newest version applied; a database written by a
newer gateway (user_version above every file we ship) is refused rather than half-understood. Because the
numbers are reserved in ranges per component (0001-0009 store, 0010 rules, 0020 uplink, 0030 GB 26875),
a file can be added below the current user_version; the `schema_migration` table therefore records each
file applied, and any file missing from it is applied, in number order.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from gateway.errors import StoreError

SCHEMA_DIR = Path(__file__).with_name("schema")
_FILE_RE = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")


def schema_files(directory: Path = SCHEMA_DIR) -> list[tuple[int, Path]]:
    """Every NNNN_name.sql in the directory, ordered by number; two files with one number are an error."""
    found: dict[int, Path] = {}
    for path in sorted(directory.iterdir()):
        m = _FILE_RE.match(path.name)
        if not m:
            continue
        version = int(m.group(1))
        if version in found:
            raise StoreError(f"two schema files share number {version:04d}: {found[version].name}, {path.name}")
        found[version] = path
    return sorted(found.items())


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, directory: Path = SCHEMA_DIR) -> list[int]:
    """Bring the database up to every schema file; return the versions applied now.

    conn must be in autocommit mode (isolation_level=None). Each file runs in its own transaction with
    its bookkeeping row and the user_version bump, so a crash leaves either all of a file or none of it.
    """
    files = schema_files(directory)
    newest = files[-1][0] if files else 0
    current = user_version(conn)
    if current > newest:
        raise StoreError(
            f"outbox database schema version {current} is newer than this gateway knows ({newest}): "
            "refusing to open it; install the newer gateway again or move the database aside"
        )
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migration (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    done = {v for (v,) in conn.execute("SELECT version FROM schema_migration")}
    applied: list[int] = []
    for version, path in files:
        if version in done:
            continue
        current = max(current, version)
        script = (
            f"BEGIN IMMEDIATE;\n{path.read_text()}\n"
            f"INSERT INTO schema_migration (version, name) VALUES ({version}, '{path.name}');\n"
            f"PRAGMA user_version = {current};\nCOMMIT;"
        )
        try:
            conn.executescript(script)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"schema migration {path.name} failed: {exc}") from exc
        applied.append(version)
    return applied
