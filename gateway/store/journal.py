"""The outbox's in-memory journal while the database is DOWN (issue 15 item 2): alarm, event and status
records in arrival order, and a separate bounded buffer of readings.

Bounds (docs/store.md "Store faults"): JOURNAL_MAX records. When full, the oldest STATUS record goes
first, then the oldest EVENT; an ALARM is never evicted for anything less urgent. A journal full of
alarms refuses the newest one (counted, logged as an error): with the rules' committer keeping its own
queue of alarm transitions, that needs 10,000 alarms during one outage. Readings live in their own
deque (TELEMETRY_BUFFER_MAX): the oldest is dropped first, counted; they never push a record out.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec

from gateway.model import Reading, RecordClass, Stamp

JOURNAL_MAX = 10_000  # records (alarm/event/status); ~2 kB each at worst: ~20 MB
TELEMETRY_BUFFER_MAX = 20_000  # readings (~1 kB each in memory): 100 s at 200 readings/s


class Entry(msgspec.Struct, frozen=True):
    cls: RecordClass
    kind: str
    device: str
    stamp: Stamp
    body: dict[str, Any]
    n: int = 0  # arrival number (put() call order): a commit that fails late still journals in order


class Journal:
    def __init__(self, max_records: int = JOURNAL_MAX, max_readings: int = TELEMETRY_BUFFER_MAX) -> None:
        self.max_records = max_records
        self.records: deque[Entry] = deque()
        self.readings: deque[Reading] = deque(maxlen=max_readings)
        self.evicted = {c.name.lower(): 0 for c in RecordClass}  # records refused or pushed out, by class
        self.readings_dropped = 0

    def add(self, entry: Entry) -> Entry | None:
        """Append a record; return the record that was given up to make room (or the new one), if any."""
        if len(self.records) < self.max_records:
            self._insert(entry)
            return None
        for cls in (RecordClass.STATUS, RecordClass.EVENT):
            if entry.cls > cls:
                break  # never push out something more urgent than the newcomer
            for i, old in enumerate(self.records):
                if old.cls == cls:
                    del self.records[i]
                    self._insert(entry)
                    self.evicted[cls.name.lower()] += 1
                    return old
        self.evicted[entry.cls.name.lower()] += 1
        return entry

    def _insert(self, entry: Entry) -> None:
        i = len(self.records)
        while i and self.records[i - 1].n > entry.n:
            i -= 1
        self.records.insert(i, entry)

    def add_reading(self, reading: Reading) -> None:
        if len(self.readings) == self.readings.maxlen:
            self.readings_dropped += 1  # the deque drops the oldest itself
        self.readings.append(reading)

    def depth(self) -> dict[str, int]:
        out = {c.name.lower(): 0 for c in RecordClass}
        for e in self.records:
            out[e.cls.name.lower()] += 1
        out["telemetry"] = len(self.readings)
        return out

    def __len__(self) -> int:
        return len(self.records)
