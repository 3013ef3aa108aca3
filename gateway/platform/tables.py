"""Stream tables of the v2 telemetry batch (docs/uplink.md "Telemetry batch v2"): their hash, the platform's
cache of them, and the expansion of a v2 batch against one.

A table lists a gateway's streams (a device and the value keys of its readings, in row order) and each
key's decimal exponent. A v2 batch names its table by hash `h`; the gateway carries the table inline in
the first batch of each MQTT session that uses it and publishes it retained on `cg/v1/<gw>/table`, so a
consumer that joins late or missed it gets it from the broker (or asks with the signed `table` command).
Standard library only, like the rest of gateway.platform; the gateway imports table_hash from here.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any

HASH_HEX = 12  # 48 bits: a gateway makes a few hundred tables in its life, so a collision is not a concern
MAX_EXP = 9


class UnknownTable(LookupError):
    """A v2 batch names a table this consumer has not seen: park the batch until it arrives (or ask)."""

    def __init__(self, gateway_id: str, h: str) -> None:
        super().__init__(f"{gateway_id}: unknown telemetry table {h!r}")
        self.gateway_id = gateway_id
        self.h = h


def table_hash(keys: list[str], exps: list[int], streams: list[list[Any]]) -> str:
    """First 12 hex digits of SHA-256 over the JSON array [k, e, s]: compact, UTF-8 unescaped."""
    canon = json.dumps([keys, exps, streams], separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canon.encode()).hexdigest()[:HASH_HEX]


def check_table(doc: Any, h: Any) -> dict[str, Any] | None:
    """{"h","k","e","s"} if `doc` is a well-formed table whose hash is `h`; None otherwise (counted, never raised)."""
    if not isinstance(doc, dict) or not isinstance(h, str):
        return None
    k, e, s = doc.get("k"), doc.get("e"), doc.get("s")
    if not (isinstance(k, list) and isinstance(e, list) and isinstance(s, list) and len(k) == len(e)):
        return None
    if not all(isinstance(x, str) for x in k) or not all(type(x) is int and 0 <= x <= MAX_EXP for x in e):
        return None
    for st in s:
        if not (isinstance(st, list) and len(st) == 2 and isinstance(st[0], str) and isinstance(st[1], list)
                and all(type(i) is int and 0 <= i < len(k) for i in st[1])):
            return None
    try:
        if table_hash(k, e, s) != h:
            return None
    except ValueError:
        return None
    return {"h": h, "k": k, "e": e, "s": s}


def expand_v2(doc: dict[str, Any], table: dict[str, Any]) -> list[dict[str, Any]]:
    """The readings of a v2 batch: row [seq gap, stream, ts delta, value...] against `table`.

    seq = previous seq + 1 + gap (the first row's previous is seq0 - 1); ts_ms = previous ts_ms + delta
    (the first row's previous is t0_ms); a value under a key with exponent e > 0 is the integer m / 10**e.
    Raises ValueError/IndexError/TypeError/KeyError on a malformed row.
    """
    keys, exps, streams = table["k"], table["e"], table["s"]
    seq, ts, synced = int(doc["seq0"]) - 1, int(doc["t0_ms"]), bool(doc["cs"])
    out = []
    for row in doc["r"]:
        device, shape = streams[row[1]]
        if len(row) != 3 + len(shape):
            raise ValueError(f"row of {len(row)} items for a stream of {len(shape)} values")
        seq += 1 + row[0]
        ts += row[2]
        values = {keys[i]: (v / 10 ** exps[i] if exps[i] else v) for i, v in zip(shape, row[3:])}
        out.append({"seq": seq, "device": device, "ts_ms": ts, "clock_synced": synced, "values": values})
    return out


class TableCache:
    """Tables by (gateway_id, h), least recently used dropped beyond max_tables. Not thread-safe."""

    def __init__(self, max_tables: int = 4096) -> None:
        self.max_tables = max_tables
        self._tables: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self.rejected = 0  # malformed tables or hash mismatches

    def learn(self, gateway_id: str, doc: Any, h: Any) -> str | None:
        """Remember a table (from the table topic, an inline `tab`, or a `table` reply); its hash, or None."""
        table = check_table(doc, h)
        if table is None:
            self.rejected += 1
            return None
        key = (gateway_id, table["h"])
        self._tables[key] = table
        self._tables.move_to_end(key)
        while len(self._tables) > self.max_tables:
            self._tables.popitem(last=False)
        return table["h"]

    def get(self, gateway_id: str, h: str) -> dict[str, Any] | None:
        table = self._tables.get((gateway_id, h))
        if table is not None:
            self._tables.move_to_end((gateway_id, h))
        return table

    def __len__(self) -> int:
        return len(self._tables)
