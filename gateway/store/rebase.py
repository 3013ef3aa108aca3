"""Re-basing stamps taken before the clock synced (issue 3, "Clock without RTC").

A Pi has no RTC: until NTP syncs, wall time is fake-hwclock's last save. Records of this boot carry
(boot_id, mono_ns), so once the clock syncs their wall time is recomputed as now - (mono_now - mono_ns)
(Clock.rebase) and written back, so a reboot before delivery does not lose the correction.
"""

from __future__ import annotations

import sqlite3

from gateway.clock import Clock
from gateway.store.codec import BOOT, Names, decode_stamp, decode_tele, encode_json, encode_tele

CHUNK_ROWS = 2000  # rows per writer transaction: alarms never wait behind a long rewrite


def rebase_records(conn: sqlite3.Connection, clock: Clock, first_seq: int) -> int:
    """Alarm/event/status rows of this boot (seq >= first_seq) stamped unsynced. Few rows: one pass."""
    updates = []
    for seq, text in conn.execute("SELECT seq, stamp FROM record WHERE seq >= ?", (first_seq,)).fetchall():
        stamp = decode_stamp(text)
        if not stamp.clock_synced and stamp.boot_id == clock.boot_id:
            updates.append((encode_json(clock.rebase(stamp)), seq))
    conn.executemany("UPDATE record SET stamp = ? WHERE seq = ?", updates)
    return len(updates)


def rebase_telemetry_chunk(conn: sqlite3.Connection, names: Names, clock: Clock, start_seq: int, end_seq: int) -> tuple[int, int | None]:
    """Re-base one chunk of telemetry in [start_seq, end_seq]; return (rows re-based, next start or None)."""
    boot_ix = names.by_text.get((BOOT, clock.boot_id))
    rows = conn.execute(
        "SELECT seq, body FROM telemetry WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?", (start_seq, end_seq, CHUNK_ROWS)
    ).fetchall()
    if not rows or boot_ix is None:
        return 0, None
    now_wall, now_mono = clock.wall(), clock.monotonic_ns()
    updates = []
    for seq, body in rows:
        row = decode_tele(body)
        if not row.synced and row.boot == boot_ix:
            row.wall_s = now_wall - (now_mono - row.mono_ns) / 1e9
            row.synced = True
            updates.append((encode_tele(row), seq))
    conn.executemany("UPDATE telemetry SET body = ? WHERE seq = ?", updates)
    return len(updates), (rows[-1][0] + 1 if len(rows) == CHUNK_ROWS else None)
