"""Decoding what a gateway sends: topic parts, and the records a message carries (a telemetry batch many).

Pure functions over json.loads output; the contract is docs/uplink.md and gateway/uplink/schemas/. A
telemetry batch is version 1 (self-contained tables) or 2 (a stream table by hash: gateway.platform.tables).
"""

from __future__ import annotations

from typing import Any

from gateway.platform.tables import TableCache, UnknownTable, check_table, expand_v2

TOPIC_ROOT = "cg/v1"
RECORD_LEAVES = ("alarm", "event", "telemetry")
TABLE_LEAF = "table"  # retained v2 stream tables (docs/uplink.md "Telemetry batch v2")


def topic_parts(topic: str) -> tuple[str, str] | None:
    """cg/v1/<gateway_id>/<leaf> -> (gateway_id, leaf); None for anything else."""
    parts = topic.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        return None
    return parts[2], parts[3]


def decode_batch(doc: dict[str, Any], tables: TableCache | None = None) -> list[dict[str, Any]]:
    """Expand a telemetry batch into plain readings (docs/uplink.md "Telemetry batch").

    Version 2 needs its table: inline (`tab`, learned into `tables` when given) or from `tables`;
    raises UnknownTable when neither has it.
    """
    if doc.get("v") == 2:
        return expand_v2(doc, _table_of(doc, tables))
    out = []
    for row in doc["r"]:
        values = {doc["k"][row[i]]: row[i + 1] for i in range(4, len(row), 2)}
        out.append({"seq": doc["seq0"] + row[0], "device": doc["d"][row[1]], "ts_ms": doc["t0_ms"] + row[2],
                    "clock_synced": bool(row[3]), "values": values})
    return out


def _table_of(doc: dict[str, Any], tables: TableCache | None) -> dict[str, Any]:
    gateway_id, h = str(doc.get("gateway_id")), doc.get("h")
    if "tab" in doc:
        if tables is not None and tables.learn(gateway_id, doc["tab"], h):
            return tables.get(gateway_id, str(h)) or {}
        inline = check_table(doc["tab"], h)
        if inline is not None:
            return inline
    table = tables.get(gateway_id, str(h)) if tables is not None else None
    if table is None:
        raise UnknownTable(gateway_id, str(h))
    return table


def records_of(leaf: str, doc: dict[str, Any], tables: TableCache | None = None) -> list[dict[str, Any]]:
    """Every record a message carries, each with gateway_id, store_id, boot_id and seq (UnknownTable: see decode_batch)."""
    head = {k: doc.get(k) for k in ("gateway_id", "store_id", "boot_id")}
    if leaf == "telemetry":
        return [{"cls": "telemetry", **head, **r} for r in decode_batch(doc, tables)]
    if leaf in ("alarm", "event") and isinstance(doc.get("seq"), int):
        return [doc]
    return []
