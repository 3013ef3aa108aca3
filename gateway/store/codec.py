"""Row encodings of the outbox: telemetry as compact msgpack arrays with interned names; records as JSON.

A reading costs ~60 bytes in its row: device, boot id, driver and the set of value keys are small
integers from the `name` table, so the 36-character boot id is not written 20,000 times a second.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Union

import msgspec

from gateway.model import Reading, Stamp

DEVICE, BOOT, VIA, KEYS = 0, 1, 2, 3  # name.kind
_KEY_SEP = "\x1f"  # ASCII unit separator between value keys of one reading

Value = Union[bool, int, float, str]


class TeleRow(msgspec.Struct, array_like=True):
    """The msgpack body of one telemetry row (the order is the on-disk format: append only)."""

    device: int
    boot: int
    wall_s: float
    mono_ns: int
    synced: bool
    keys: int
    values: list[Value]
    via: int


class Names:
    """Interned strings <-> small integers, mirrored from the `name` table.

    The writer adds names inside its transaction; `mark`/`rollback` undo the ones a failed
    transaction had inserted so the cache never points at rows that do not exist."""

    def __init__(self) -> None:
        self.by_text: dict[tuple[int, str], int] = {}
        self.by_ix: dict[int, str] = {}
        self.top = 0
        self._unsaved: list[tuple[int, int, str]] = []

    def load(self, conn: sqlite3.Connection) -> None:
        """Read names added since the last load (readers call this when they meet an unknown ix)."""
        for ix, kind, text in conn.execute("SELECT ix, kind, text FROM name WHERE ix > ? ORDER BY ix", (self.top,)):
            self._remember(ix, kind, text)

    def _remember(self, ix: int, kind: int, text: str) -> None:
        self.by_text[(kind, text)] = ix
        self.by_ix[ix] = text
        self.top = max(self.top, ix)

    def intern(self, kind: int, text: str) -> int:
        ix = self.by_text.get((kind, text))
        if ix is None:
            ix = self.top + 1
            self._remember(ix, kind, text)
            self._unsaved.append((ix, kind, text))
        return ix

    def save(self, conn: sqlite3.Connection) -> None:
        """Inside the writer's transaction: insert the names interned since the last save."""
        if self._unsaved:
            conn.executemany("INSERT INTO name (ix, kind, text) VALUES (?, ?, ?)", self._unsaved)
            self._unsaved.clear()

    def mark(self) -> int:
        return self.top

    def rollback(self, mark: int) -> None:
        gone = [ix for ix in self.by_ix if ix > mark]
        for ix in gone:
            del self.by_ix[ix]
        if gone:
            self.by_text = {k: v for k, v in self.by_text.items() if v <= mark}
        self.top = mark
        self._unsaved.clear()

    def text(self, conn: sqlite3.Connection, ix: int) -> str:
        if ix not in self.by_ix:
            self.load(conn)
        return self.by_ix[ix]


_tele_enc = msgspec.msgpack.Encoder()
_tele_dec = msgspec.msgpack.Decoder(TeleRow)
_json_enc = msgspec.json.Encoder()
_stamp_dec = msgspec.json.Decoder(Stamp)
_body_dec = msgspec.json.Decoder(dict[str, Any])


def encode_reading(names: Names, r: Reading) -> bytes:
    s = r.stamp
    keys = names.intern(KEYS, _KEY_SEP.join(r.values))
    row = TeleRow(names.intern(DEVICE, r.device_id), names.intern(BOOT, s.boot_id), s.wall_s, s.mono_ns,
                  s.clock_synced, keys, list(r.values.values()), names.intern(VIA, r.via))
    return _tele_enc.encode(row)


def decode_tele(body: bytes) -> TeleRow:
    return _tele_dec.decode(body)


def encode_tele(row: TeleRow) -> bytes:
    return _tele_enc.encode(row)


def tele_fields(names: Names, conn: sqlite3.Connection, row: TeleRow) -> tuple[str, Stamp, dict[str, Any]]:
    """(device, stamp, body) of a telemetry row as fetch returns it: body = {"values": ..., "via": ...}."""
    keys = names.text(conn, row.keys)
    values = dict(zip(keys.split(_KEY_SEP) if keys else [], row.values))
    stamp = Stamp(row.wall_s, names.text(conn, row.boot), row.mono_ns, row.synced)
    return names.text(conn, row.device), stamp, {"values": values, "via": names.text(conn, row.via)}


def encode_json(obj: Any) -> str:
    return _json_enc.encode(obj).decode()


def decode_stamp(text: str) -> Stamp:
    return _stamp_dec.decode(text)


def decode_body(text: str) -> dict[str, Any]:
    return _body_dec.decode(text)
