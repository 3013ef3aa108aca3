"""Decoding what a gateway sends: topic parts, and the records a message carries (a telemetry batch many).

Pure functions over json.loads output; the contract is docs/uplink.md and gateway/uplink/schemas/.
"""

from __future__ import annotations

from typing import Any

TOPIC_ROOT = "cg/v1"
RECORD_LEAVES = ("alarm", "event", "telemetry")


def topic_parts(topic: str) -> tuple[str, str] | None:
    """cg/v1/<gateway_id>/<leaf> -> (gateway_id, leaf); None for anything else."""
    parts = topic.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        return None
    return parts[2], parts[3]


def decode_batch(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Expand a telemetry batch into plain readings (docs/uplink.md "Telemetry batch")."""
    out = []
    for row in doc["r"]:
        values = {doc["k"][row[i]]: row[i + 1] for i in range(4, len(row), 2)}
        out.append({"seq": doc["seq0"] + row[0], "device": doc["d"][row[1]], "ts_ms": doc["t0_ms"] + row[2],
                    "clock_synced": bool(row[3]), "values": values})
    return out


def records_of(leaf: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every record a message carries, each with gateway_id, store_id, boot_id and seq."""
    head = {k: doc.get(k) for k in ("gateway_id", "store_id", "boot_id")}
    if leaf == "telemetry":
        return [{"cls": "telemetry", **head, **r} for r in decode_batch(doc)]
    if leaf in ("alarm", "event") and isinstance(doc.get("seq"), int):
        return [doc]
    return []
