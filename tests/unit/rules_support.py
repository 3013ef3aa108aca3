"""Test parts for the rule engine: a fake ActionContext at the edge, a stand-in for the Outbox's
transact/add_record/put on a real SQLite file (until gateway.store.outbox.Outbox is implemented),
devices and item builders."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import msgspec

from drivers.base import Command
from gateway.clock import ManualClock
from gateway.config.schema import Contact
from gateway.errors import GatewayError, ModemUnavailable
from gateway.model import ContactRole, Device, DeviceType, Event, EventKind, Location, Reading, RecordClass, ResidentCategory

SCHEMA = Path(__file__).resolve().parents[2] / "gateway/store/schema/0010_alarms.sql"


class SqliteOutbox:
    """Just transact/add_record/put of the Outbox contract, on a real SQLite file with our migration.

    fn runs in a worker thread, like the real writer; one transaction per call, committed durably."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA.read_text())
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS record (seq INTEGER PRIMARY KEY AUTOINCREMENT, cls INTEGER, kind TEXT, device TEXT, body TEXT)"
        )
        self.fail_next: Exception | None = None
        self.gate: threading.Event | None = None  # when set up, every commit waits for it (a slow fsync)
        self.commits = 0

    def _run(self, fn: Any) -> Any:
        if self.gate is not None:
            self.gate.wait(10)
        with self._lock:
            if self.fail_next is not None:
                exc, self.fail_next = self.fail_next, None
                raise exc
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
            self.commits += 1
            return result

    async def transact(self, fn: Any, durable: bool = True) -> Any:
        return await asyncio.to_thread(self._run, fn)

    def add_record(self, conn: sqlite3.Connection, cls: RecordClass, kind: str, device: str, stamp: Any, body: dict) -> int:
        cur = conn.execute("INSERT INTO record (cls, kind, device, body) VALUES (?,?,?,?)", (int(cls), kind, device, msgspec.json.encode(body)))
        return int(cur.lastrowid)

    async def put(self, cls: RecordClass, kind: str, device: str, stamp: Any, body: dict) -> int:
        return await self.transact(lambda c: self.add_record(c, cls, kind, device, stamp, body))

    def records(self, prefix: str = "") -> list[tuple[int, str, str, dict]]:
        with self._lock:
            rows = self.conn.execute("SELECT seq, kind, device, body FROM record ORDER BY seq").fetchall()
        return [(r[0], r[1], r[2], msgspec.json.decode(r[3])) for r in rows if r[1].startswith(prefix)]

    def close(self) -> None:
        self.conn.close()


class FakeContext:
    """ActionContext at the edge: records every actuation and SMS; can be told to fail."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.sms: list[tuple[str, str]] = []
        self.urgent_sms: list[str] = []  # numbers texted with urgent=True (a critical alarm's)
        self.down_s = 0.0
        self.actuate_error: GatewayError | None = None
        self.modem_absent = False
        self.uplink_kicks = 0

    async def actuate(self, command: Command) -> None:
        if self.actuate_error is not None:
            raise self.actuate_error
        self.commands.append(command)

    async def send_sms(self, number: str, text: str, urgent: bool = False) -> None:
        if self.modem_absent:
            raise ModemUnavailable("no SIM")
        self.sms.append((number, text))
        if urgent:
            self.urgent_sms.append(number)

    def uplink_down_for_s(self) -> float:
        return self.down_s

    def notify_uplink(self) -> None:
        self.uplink_kicks += 1

    def coil(self, target: str) -> Any:
        """The last value written to this output, or None if never written."""
        values = [c.value for c in self.commands if c.target == target]
        return values[-1] if values else None


def device(id: str, type: DeviceType, building: str = "2", room: str = "401", contacts: tuple[str, ...] = (), heartbeat_s: float = 0.0, profile: str = "") -> Device:
    return Device(
        id=id, profile=profile or f"{type}_p", type=type, port="p", address=1,
        location=Location(building, "1", room), resident=ResidentCategory.ELDERLY_ALONE,
        contacts=contacts, heartbeat_s=heartbeat_s,
    )


DEVICES = {
    d.id: d
    for d in [
        device("smoke-401", DeviceType.SMOKE, contacts=("wang-son",), heartbeat_s=3600),
        device("smoke-502", DeviceType.SMOKE, room="502", heartbeat_s=3600),
        device("smoke-b3", DeviceType.SMOKE, building="3", room="101", heartbeat_s=3600),
        device("gas-401", DeviceType.GAS),
        device("flow-2", DeviceType.WATER_FLOW, room=""),
        device("hydrant-1", DeviceType.HYDRANT, room=""),
        device("guard-relay", DeviceType.RELAY_BOX, building="", room=""),
    ]
}

CONTACTS = (
    Contact(id="guard", name="门卫室", role=ContactRole.GUARD_ROOM, phone="+8613800000001"),
    Contact(id="grid-li", name="李网格员", role=ContactRole.GRID_WORKER, phone="+8613800000002"),
    Contact(id="safety-zhao", name="赵安全员", role=ContactRole.SAFETY_MANAGER, phone="+8613800000003"),
    Contact(id="street", name="街道消防站", role=ContactRole.STREET_CENTER, phone="+8613800000004"),
    Contact(id="wang-son", name="王先生", role=ContactRole.RELATIVE, phone="+8613800000005"),
)


class Feed:
    """Builds items stamped by a ManualClock."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    def reading(self, device_id: str, **values: Any) -> Reading:
        return Reading(device_id, self.clock.now(), values, via="test")

    def event(self, device_id: str, kind: EventKind, code: str = "") -> Event:
        return Event(device_id, kind, self.clock.now(), code=code, via="test")


def rules(toml_like: list[dict]) -> tuple[Any, ...]:
    from gateway.rules.schema import Rule

    return tuple(msgspec.convert(r, Rule) for r in toml_like)
