"""What goes on the wire: topics, the JSON payload of every uplink message, telemetry batching.

The contract is docs/uplink.md and the JSON Schemas in gateway/uplink/schemas/. Encoding is
deterministic: the same outbox record always yields the same bytes (duplicates are byte-identical).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from gateway.model import RecordClass, Stamp
from gateway.platform.decode import decode_batch  # noqa: F401 - re-exported: the reference lives platform-side

WIRE_VERSION = 1
TOPIC_ROOT = "cg/v1"
_ENC = msgspec.json.Encoder()

# Per-record topics (alarm and event records one message each; STATUS-class records are events about
# the gateway itself and ride the event topic, the retained status topic is the live snapshot only).
_CLASS_TOPIC = {RecordClass.ALARM: "alarm", RecordClass.EVENT: "event", RecordClass.STATUS: "event", RecordClass.TELEMETRY: "telemetry"}
_CLASS_NAME = {c: c.name.lower() for c in RecordClass}


class Topics:
    """cg/v1/<gateway_id>/... : one subtree per gateway so a broker ACL can confine it (reliability §5)."""

    def __init__(self, gateway_id: str) -> None:
        base = f"{TOPIC_ROOT}/{gateway_id}"
        self.alarm = f"{base}/alarm"
        self.event = f"{base}/event"
        self.telemetry = f"{base}/telemetry"
        self.status = f"{base}/status"
        self.table = f"{base}/table"  # retained stream tables of telemetry batch v2 (gateway/uplink/compact.py)
        self.reply = f"{base}/reply"
        self.cmd = f"{base}/cmd"  # down
        self.relay = f"{base}/relay"  # down: NB-IoT reports relayed by the platform

    def for_class(self, cls: RecordClass) -> str:
        return getattr(self, _CLASS_TOPIC[cls])


class Message(msgspec.Struct, frozen=True):
    """One PUBLISH: its topic, payload and the outbox seqs it carries (empty for status/reply)."""

    topic: str
    payload: bytes
    seqs: tuple[int, ...] = ()
    cls: RecordClass = RecordClass.STATUS
    retain: bool = False


def wall_ms(stamp: Stamp) -> int:
    # Integer milliseconds: no float formatting differences between encoders, exact on the platform.
    return int(round(stamp.wall_s * 1000))


def reading_values(body: dict[str, Any]) -> dict[str, Any]:
    """The values of a telemetry record body: {"values": {...}, ...} as the store writes it, or the body itself."""
    values = body.get("values")
    return values if isinstance(values, dict) else body


class Envelope:
    """The identity header every message carries: gateway_id, store_id and (per message) boot_id."""

    def __init__(self, gateway_id: str, store_id: str) -> None:
        self.gateway_id = gateway_id
        self.store_id = store_id
        self.topics = Topics(gateway_id)

    def head(self, boot_id: str) -> dict[str, Any]:
        return {"v": WIRE_VERSION, "gateway_id": self.gateway_id, "store_id": self.store_id, "boot_id": boot_id}

    def record(self, seq: int, cls: RecordClass, kind: str, device: str, stamp: Stamp, body: dict[str, Any]) -> Message:
        """An alarm, event or status-class record: one message, readable keys."""
        doc = self.head(stamp.boot_id)
        doc.update(seq=seq, cls=_CLASS_NAME[cls], kind=kind, device=device, ts_ms=wall_ms(stamp), clock_synced=stamp.clock_synced, body=body)
        return Message(self.topics.for_class(cls), _ENC.encode(doc), (seq,), cls)

    def status(self, boot_id: str, stamp: Stamp, online: bool, fields: dict[str, Any]) -> Message:
        """The retained status snapshot (and, with online=False, the Last Will / clean-shutdown message)."""
        doc = self.head(boot_id)
        doc.update(online=online, ts_ms=wall_ms(stamp), clock_synced=stamp.clock_synced)
        doc.update(fields)
        return Message(self.topics.status, _ENC.encode(doc), retain=True)

    def reply(self, boot_id: str, stamp: Stamp, cmd_id: str, command: str, status: str, reason: str = "", result: dict[str, Any] | None = None) -> Message:
        doc = self.head(boot_id)
        doc.update(id=cmd_id, command=command, status=status, reason=reason, result=result or {}, ts_ms=wall_ms(stamp))
        return Message(self.topics.reply, _ENC.encode(doc))


class Batcher(Protocol):
    """Telemetry batch v1 (TelemetryBatcher) or v2 (compact.CompactBatcher), by uplink.telemetry_version."""

    def take(self, records: Sequence[Any]) -> Message: ...
    def pop_table(self) -> Message | None: ...
    def session_start(self) -> None: ...
    def table_doc(self, h: str = "") -> dict[str, Any] | None: ...


class TelemetryBatcher:
    """Packs consecutive telemetry records into compact batches (docs/uplink.md "Telemetry batch").

    Each reading is a row [seq - seq0, device index, ms - t0_ms, clock_synced 0/1, key index, value, ...]
    against per-batch device and key tables: ~25-35 bytes per reading instead of ~120 as plain JSON.
    A batch never mixes boot ids (the header carries one) and is capped in readings and bytes.
    """

    HEAD_RESERVE_B = 200  # header keys, ids and brackets around the rows

    def __init__(self, envelope: Envelope, max_readings: int, max_bytes: int) -> None:
        self.env = envelope
        self.max_readings = max_readings
        self.max_bytes = max_bytes

    def session_start(self) -> None:
        """v1 batches are self-contained: nothing to re-announce (CompactBatcher's twin hooks)."""

    def pop_table(self) -> Message | None:
        return None

    def table_doc(self, h: str = "") -> dict[str, Any] | None:
        return None

    def take(self, records: Sequence[Any]) -> Message:
        """Build one batch from the head of `records` (telemetry, FIFO). Always takes at least one."""
        first = records[0]
        boot_id = first.stamp.boot_id
        seq0, t0 = first.seq, wall_ms(first.stamp)
        devices: dict[str, int] = {}
        keys: dict[str, int] = {}
        rows: list[list[Any]] = []
        seqs: list[int] = []
        size = self.HEAD_RESERVE_B + len(boot_id)
        for rec in records[: self.max_readings]:
            if rec.cls != RecordClass.TELEMETRY or rec.stamp.boot_id != boot_id:
                break
            row_size, row, new_dev, new_keys = self._row(rec, seq0, t0, devices, keys)
            if rows and size + row_size > self.max_bytes:
                break
            size += row_size
            if new_dev:
                devices[rec.device] = len(devices)
            for k in new_keys:
                keys[k] = len(keys)
            row[1] = devices[rec.device]
            row[4::2] = [keys[k] for k in row[4::2]]
            rows.append(row)
            seqs.append(rec.seq)
        doc = self.env.head(boot_id)
        doc.update(seq0=seq0, t0_ms=t0, d=list(devices), k=list(keys), r=rows)
        return Message(self.env.topics.telemetry, _ENC.encode(doc), tuple(seqs), RecordClass.TELEMETRY)

    @staticmethod
    def _row(rec: Any, seq0: int, t0: int, devices: dict[str, int], keys: dict[str, int]) -> tuple[int, list[Any], bool, list[str]]:
        """The row with key names still in place, its encoded size estimate, and table additions."""
        values = reading_values(rec.body)
        row: list[Any] = [rec.seq - seq0, devices.get(rec.device, len(devices)), wall_ms(rec.stamp) - t0, int(rec.stamp.clock_synced)]
        new_keys = []
        for k, v in values.items():
            if k not in keys and k not in new_keys:
                new_keys.append(k)
            row.append(k)
            row.append(v)
        new_dev = rec.device not in devices
        # Size: the row as it will be encoded (key names replaced by small indexes, ~2 bytes each),
        # plus table entries it adds ("name", = len + 3).
        probe = row[:4] + [x for i, x in enumerate(row[4:]) if i % 2]
        size = len(_ENC.encode(probe)) + 3 * (len(row) - 4) // 2 + 1
        size += (len(rec.device) + 3) if new_dev else 0
        size += sum(len(k) + 3 for k in new_keys)
        return size, row, new_dev, new_keys
