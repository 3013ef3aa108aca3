"""Read side of the outbox: its own read-only connection for fetch (the uplinks) and statistics.

WAL lets it read committed rows while the writer commits; every query is indexed (rowid or
record_cls) and stops at its LIMIT, so it is safe to call from the asyncio loop.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable

import msgspec

from gateway.clock import Clock
from gateway.model import RecordClass, Stamp
from gateway.store.record import AnyOf, Record
from gateway.store.codec import Names, decode_body, decode_stamp, decode_tele, tele_fields

RECORD_CLASSES = (RecordClass.ALARM, RecordClass.EVENT, RecordClass.STATUS)
OWED = "SELECT seq, body FROM telemetry WHERE seq >= ? AND pending & ? ORDER BY seq"
FIRST_OWED = "SELECT seq FROM telemetry WHERE seq >= ? AND pending & ? ORDER BY seq LIMIT 1"
OWED_NOT_HELD = ("SELECT seq, body FROM telemetry WHERE seq >= ? AND pending & ? "
                 "AND seq NOT IN (SELECT value FROM json_each(?)) ORDER BY seq")  # the list built once per statement
SKIP_IN_SQL = 2_000  # seqs to step over, beyond which a fetch from the floor leaves them to SQLite
_JSON = msgspec.json.Encoder()


def connect_ro(path: str) -> sqlite3.Connection:
    """Read-only connection (mode=ro URI): never writes the database, never takes the write lock."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False, timeout=2.0)
    conn.execute("PRAGMA query_only=1")
    return conn


def stamp_age_s(stamp: Stamp, clock: Clock) -> float:
    """Age of a stamp: monotonic within this boot (immune to clock steps), wall time across boots."""
    if stamp.boot_id == clock.boot_id:
        return max(0.0, (clock.monotonic_ns() - stamp.mono_ns) / 1e9)
    return max(0.0, clock.wall() - stamp.wall_s)


def file_bytes(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def read_depth_and_age(conn: sqlite3.Connection, names: Names, clock: Clock) -> tuple[dict[str, int], dict[str, float]]:
    """Rows waiting per class and the age of each class's oldest row (telemetry count from meta)."""
    depth = {c.name.lower(): 0 for c in RecordClass}
    oldest: dict[str, float] = {}
    for cls, n in conn.execute("SELECT cls, count(*) FROM record GROUP BY cls"):
        depth[RecordClass(cls).name.lower()] = n
    row = conn.execute("SELECT value FROM meta WHERE key = 'tele_rows'").fetchone()
    depth["telemetry"] = int(row[0]) if row else 0
    for cls in RECORD_CLASSES:
        row = conn.execute("SELECT stamp FROM record WHERE cls = ? ORDER BY seq LIMIT 1", (int(cls),)).fetchone()
        if row:
            oldest[cls.name.lower()] = round(stamp_age_s(decode_stamp(row[0]), clock), 3)
    row = conn.execute("SELECT body FROM telemetry ORDER BY seq LIMIT 1").fetchone()
    if row:
        _, stamp, _ = tele_fields(names, conn, decode_tele(row[0]))
        oldest["telemetry"] = round(stamp_age_s(stamp, clock), 3)
    return depth, oldest


class Reader:
    def __init__(self, path: str, clock: Clock) -> None:
        self.conn = connect_ro(path)
        self.clock = clock
        self.names = Names()
        # Per consumer: no telemetry row below this seq is owed to it (rows below were acked when it
        # was read; later commits only add higher seqs), so a consumer far ahead of another one does
        # not rescan what it has already sent.
        self._floors: dict[str, int] = {}
        self._lock = threading.Lock()  # one statement at a time on this connection

    def close(self) -> None:
        self.conn.close()

    def fetch(self, consumer: str, bit: int, limit: int, skip: AnyOf, classes: Iterable[RecordClass] | None,
              after: int = 0) -> list[Record]:
        want = set(RecordClass) if classes is None else set(classes)
        rebase = self.clock.synced()  # one check per fetch, not per record
        out: list[Record] = []
        with self._lock:
            rec = [str(int(c)) for c in RECORD_CLASSES if c in want]
            if rec and limit > 0:
                cur = self.conn.execute(
                    f"SELECT seq, cls, kind, device, stamp, body FROM record WHERE cls IN ({','.join(rec)}) "
                    "AND pending & ? ORDER BY cls, seq", (bit,))
                for seq, cls, kind, device, stamp, body in cur:
                    if seq in skip:
                        continue
                    st = decode_stamp(stamp)
                    out.append(Record(seq, RecordClass(cls), kind, device, self.clock.rebase(st) if rebase else st, decode_body(body)))
                    if len(out) >= limit:
                        break
                cur.close()
            if RecordClass.TELEMETRY in want and len(out) < limit:
                self._fetch_telemetry(consumer, bit, limit, skip, rebase, out, after)
        return out

    def _fetch_telemetry(self, consumer: str, bit: int, limit: int, skip: AnyOf, rebase: bool, out: list[Record],
                         after: int) -> None:
        floor = self._floors.get(consumer, 0)
        start = max(floor, after + 1)  # past the caller's cursor, the rows between floor and it may still be owed
        from_floor = after < max(floor, 1)  # only such a scan may move the floor
        first = None
        if from_floor and len(skip) > SKIP_IN_SQL:
            # A fetch from the floor with a big window in flight and acks awaiting their delete (a new session,
            # the drain idle again): SQLite steps over them, not this loop. Each row handed to Python releases
            # and retakes the GIL, and with the store's writer thread busy each retake can wait: 40,000
            # skipped rows stalled the event loop for seconds in the 1,000,000-reading drain. The floor is the
            # first owed row whether skipped or not: its own one-step query.
            row = self.conn.execute(FIRST_OWED, (start, bit)).fetchone()
            first = None if row is None else row[0]
            cur = self.conn.execute(OWED_NOT_HELD, (start, bit, _JSON.encode(list(skip)).decode()))  # TEXT: json_each refuses a BLOB
        else:
            cur = self.conn.execute(OWED, (start, bit))
        for seq, body in cur:
            if first is None:
                first = seq
            if seq in skip:
                continue
            device, stamp, fields = tele_fields(self.names, self.conn, decode_tele(body))
            out.append(Record(seq, RecordClass.TELEMETRY, "reading", device, self.clock.rebase(stamp) if rebase else stamp, fields))
            if len(out) >= limit:
                break
        cur.close()
        if first is not None and from_floor:
            self._floors[consumer] = first

    def record_seqs(self, seqs: list[int]) -> set[int]:
        """Which of these seqs are alarm/event/status rows (their acks are applied at once, not batched)."""
        if not seqs:
            return set()
        with self._lock:
            marks = ",".join("?" * len(seqs))
            return {s for (s,) in self.conn.execute(f"SELECT seq FROM record WHERE seq IN ({marks})", seqs)}

    def depth_and_age(self) -> tuple[dict[str, int], dict[str, float]]:
        with self._lock:
            return read_depth_and_age(self.conn, self.names, self.clock)
