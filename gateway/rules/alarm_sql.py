"""SQL of the alarm tables (schema 0010_alarms.sql): run inside Outbox.transact, never on the loop.

Each transition writes its state, a history row and its ALARM outbox record in one transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from gateway.model import Alarm, AlarmState, RecordClass, Severity, Stamp
from gateway.rules.lifecycle import Transition

_enc = msgspec.json.Encoder()
_stamp = msgspec.json.Decoder(Stamp)
_dict = msgspec.json.Decoder(dict)


class Pending(msgspec.Struct, frozen=True):
    """A transition queued for commit, with the runtime fields the alarm row also keeps."""

    transition: Transition
    body: dict[str, Any]  # the outbox record body (engine.record_body)
    tier: int
    silenced: bool
    detail: dict[str, Any]


def write(conn: sqlite3.Connection, outbox: Any, items: list[Pending]) -> list[int]:
    """Apply transitions in order; return the outbox seq of each (0 for repeats, which add no record)."""
    seqs = []
    for p in items:
        t, a = p.transition, p.transition.alarm
        if t.kind == "raised":
            conn.execute(
                "INSERT INTO alarm (id, rule, device_id, severity, state, title, raised, updated, updated_wall_s,"
                " repeats, silenced, tier, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (a.id, a.rule, a.device_id, int(a.severity), str(a.state), a.title, _enc.encode(a.raised),
                 _enc.encode(a.updated), a.updated.wall_s, a.repeats, int(p.silenced), p.tier, _enc.encode(p.detail)),
            )
        else:
            conn.execute(
                "UPDATE alarm SET state=?, updated=?, updated_wall_s=?, acknowledged_by=?, cleared_by=?, repeats=?,"
                " silenced=?, tier=?, detail=? WHERE id=?",
                (str(a.state), _enc.encode(a.updated), a.updated.wall_s, a.acknowledged_by, a.cleared_by, a.repeats,
                 int(p.silenced), p.tier, _enc.encode(p.detail), a.id),
            )
        if t.kind == "repeated":
            seqs.append(0)  # a repeat updates the count; the device's event record already went up
            continue
        seq = outbox.add_record(conn, RecordClass.ALARM, f"alarm.{t.kind}", a.device_id, t.stamp, p.body)
        conn.execute(
            "INSERT INTO alarm_history (alarm_id, transition, by, stamp, seq, detail) VALUES (?,?,?,?,?,?)",
            (a.id, t.kind, t.by, _enc.encode(t.stamp), seq, _enc.encode(t.detail)),
        )
        seqs.append(seq)
    return seqs


def record_notice(conn: sqlite3.Connection, alarm_id: str, tier: int, contact_id: str, outcome: str, wall_s: float) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO alarm_notice (alarm_id, tier, contact_id, outcome, wall_s) VALUES (?,?,?,?,?)",
        (alarm_id, tier, contact_id, outcome, wall_s),
    )


_COLS = "id, rule, device_id, severity, state, title, raised, updated, acknowledged_by, cleared_by, repeats, silenced, tier, detail"


def _row(r: tuple[Any, ...]) -> tuple[Alarm, bool, int, dict[str, Any]]:
    alarm = Alarm(
        id=r[0], rule=r[1], device_id=r[2], severity=Severity(r[3]), state=AlarmState(r[4]), title=r[5],
        raised=_stamp.decode(r[6]), updated=_stamp.decode(r[7]), acknowledged_by=r[8], cleared_by=r[9], repeats=r[10],
    )
    return alarm, bool(r[11]), int(r[12]), _dict.decode(r[13])


def load_active(conn: sqlite3.Connection) -> list[tuple[Alarm, bool, int, dict[str, Any]]]:
    rows = conn.execute(f"SELECT {_COLS} FROM alarm WHERE state != 'cleared' ORDER BY raised").fetchall()
    return [_row(r) for r in rows]


def load_recent(conn: sqlite3.Connection, since_wall_s: float, limit: int) -> list[Alarm]:
    rows = conn.execute(
        f"SELECT {_COLS} FROM alarm WHERE state = 'cleared' AND updated_wall_s >= ? ORDER BY updated_wall_s DESC LIMIT ?",
        (since_wall_s, limit),
    ).fetchall()
    return [_row(r)[0] for r in reversed(rows)]


def load_notices(conn: sqlite3.Connection) -> set[tuple[str, int, str]]:
    rows = conn.execute(
        "SELECT n.alarm_id, n.tier, n.contact_id FROM alarm_notice n JOIN alarm a ON a.id = n.alarm_id WHERE a.state != 'cleared'"
    ).fetchall()
    return {(r[0], int(r[1]), r[2]) for r in rows}
