"""The inspection journal: every self-check, fire test and power switchover test, one JSON line each.

Outbox rows are deleted once delivered, but an inspector asks months later "show me this month's tests"
(GB 26875.1: daily self-checks, simulated fire tests at least twice a month, power switchover tests).
An append-only file beside the store, fsynced per entry, read by `gateway tests --since` without the
daemon. Bounded: past MAX_LINES the oldest half is dropped (about two years of daily entries).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import msgspec

MAX_LINES = 2000
Kind = Literal["selfcheck", "fire_test", "power_test"]


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    wall_s: float
    ok: bool
    by: str  # "schedule", "cli:<user>", "platform"
    summary: str
    device: str = ""
    detail: dict[str, Any] = {}


def default_path(store_path: str) -> str:
    return str(Path(store_path).parent / "tests.jsonl")


class Journal:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._enc = msgspec.json.Encoder()

    def append(self, entry: Entry) -> None:
        """Write one line and fsync it (an inspection record must survive the power cut that follows)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = self._enc.encode(entry) + b"\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # the last write was cut by a power loss: do not glue onto it
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._trim()

    def read(self, since_wall_s: float = 0.0) -> list[Entry]:
        """Entries at or after `since_wall_s`, oldest first; a damaged line (cut by a power loss) is skipped."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in raw.splitlines():
            try:
                entry = msgspec.json.decode(line, type=Entry)
            except msgspec.DecodeError:
                continue
            if entry.wall_s >= since_wall_s:
                out.append(entry)
        return out

    def last(self, kind: Kind) -> Entry | None:
        entries = [e for e in self.read() if e.kind == kind]
        return entries[-1] if entries else None

    def _trim(self) -> None:
        lines = self.path.read_bytes().splitlines(keepends=True)
        if len(lines) <= MAX_LINES:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(lines[len(lines) // 2 :]))
        os.replace(tmp, self.path)
