"""Small per-driver state that must survive a restart (frame counters, sequence numbers): one JSON file
per port in the daemon's state directory, written atomically, rarely, and never on the alarm path.

Why a debounced file and not a write per frame: an SD card wears out and an fsync can stall for tens
of milliseconds. Received counters are written at most every `flush_interval_s` (30 s), or within
`URGENT_S` after an alarm frame or a transmit-counter reservation, in a worker thread (temp file +
fsync + rename + directory fsync). A received counter read back after a crash is therefore a LOWER
bound of the truth: the only cost is that frames accepted in the last few seconds before a crash
could be replayed once; it can never make a genuine frame look old (see drivers/lora/README.md).
Transmit counters use write-ahead reservation instead (`reserve`): the persisted value is an UPPER
bound, so a counter is never reused after a crash.

Failure tolerance: a missing, read-only or corrupt state file never stops a driver. The store keeps
working in memory, counts the failure, retries at the next interval and says so in `health()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from structlog.typing import FilteringBoundLogger

FORMAT_VERSION = 1
FLUSH_INTERVAL_S = 30.0  # SD-card friendly: at most two writes a minute, only when something changed
URGENT_S = 1.0  # alarm frames and transmit reservations are made durable this soon
MAX_FILE_BYTES = 1 << 20  # a state file is a few kB; anything bigger is not ours

Record = dict[str, Any]


class CounterStore:
    """get(key) / put(key, record) on JSON-able dicts; `run()` flushes them until cancelled.

    `state_dir` None = memory only (tests, or a daemon that gives no state directory).
    """

    def __init__(self, state_dir: Path | str | None, name: str, log: FilteringBoundLogger, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.path = Path(state_dir) / f"counters-{name}.json" if state_dir is not None else None
        self.log = log
        self.flush_interval_s = flush_interval_s
        self.records: dict[str, Record] = {}
        self.counters = {"state_writes": 0, "state_write_failed": 0, "state_corrupt": 0}
        self.error = "" if self.path is not None else "no state directory: counters kept in memory only"
        self._dirty = False
        self._gen = 0  # bumped by every put(): an older snapshot never overwrites a newer one on disk
        self._written_gen = -1
        self._urgent = asyncio.Event()  # replaced in run(): an Event belongs to the loop that awaits it
        # One writer at a time: the flusher's worker thread may still be writing when a cancelled run()
        # (or a downlink's reservation) writes again; both use the same temp file.
        self._write_lock = threading.Lock()
        self._load()

    # -- records ----------------------------------------------------------------------------------

    def get(self, key: str) -> Record | None:
        return self.records.get(key)

    def put(self, key: str, record: Record, urgent: bool = False) -> None:
        self.records[key] = record
        self._gen += 1
        self._dirty = True
        if urgent:
            self._kick()

    def reserve(self, key: str, block: int) -> int:
        """Write-ahead reservation of a transmit counter: returns the first value this process may
        use and persists `value + block` as the new floor (urgently). Call again when `block` values
        have been used. After a crash the next process starts at the persisted floor: never reuses."""
        rec = self.records.get(key) or {}
        start = int(rec.get("reserved", 0)) if isinstance(rec.get("reserved", 0), int) else 0
        self.put(key, {"reserved": start + block}, urgent=True)
        return start

    # -- persistence ------------------------------------------------------------------------------

    @property
    def persisted(self) -> bool:
        """True while what is in memory reaches the disk (the last write worked or none was needed)."""
        return self.path is not None and not self.error

    def health(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None, "persisted": self.persisted, "error": self.error,
                "records": len(self.records), "dirty": self._dirty}

    async def run(self) -> None:
        """Flush when dirty, every `flush_interval_s` or sooner when urged, until cancelled (then once more)."""
        self._urgent = asyncio.Event()
        try:
            while True:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a stop (cancel) that lands as
                # the urgent event fires (gh-86296), and the driver owning this task then never stops.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval_s):
                        await self._urgent.wait()
                if self._urgent.is_set():
                    self._urgent.clear()
                    await asyncio.sleep(URGENT_S)  # coalesce a burst of alarm frames into one write
                await self.flush()
        finally:
            self.flush_sync()  # stopping: a last small write, blocking is fine here

    async def flush(self) -> None:
        if self._dirty and self.path is not None:
            snapshot = self._snapshot()
            self._dirty = False
            ok = await asyncio.to_thread(self._write, *snapshot)
            if not ok:
                self._dirty = True

    def flush_sync(self) -> None:
        if self._dirty and self.path is not None:
            self._dirty = not self._write(*self._snapshot())

    def _snapshot(self) -> tuple[int, bytes]:
        doc = {"v": FORMAT_VERSION, "records": self.records}
        return self._gen, json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    def _write(self, gen: int, data: bytes) -> bool:
        """Atomic replace: temp file, fsync, rename, fsync the directory. False (counted) on any OSError."""
        assert self.path is not None
        with self._write_lock:
            if gen <= self._written_gen:
                return True  # a newer snapshot is already on disk
            ok = self._write_locked(data, self.path)
            if ok:
                self._written_gen = gen
            return ok

    def _write_locked(self, data: bytes, path: Path) -> bool:
        tmp = path.with_name(path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            self.counters["state_write_failed"] += 1
            first = not self.error
            self.error = f"cannot write {path}: {exc.strerror or exc}"
            # First failure WARNING, repeats DEBUG (STYLE "Errors and logging"); the driver keeps running.
            (self.log.warning if first else self.log.debug)("counter_state_unwritable", path=str(path), error=str(exc))
            return False
        self.counters["state_writes"] += 1
        if self.error:
            self.log.info("counter_state_writable", path=str(path))
        self.error = ""
        return True

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return  # first start: nothing learnt yet
        except OSError as exc:
            self._corrupt(f"cannot read {self.path}: {exc.strerror or exc}")
            return
        try:
            doc = json.loads(raw) if len(raw) <= MAX_FILE_BYTES else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION or not isinstance(doc.get("records"), dict):
            self._corrupt(f"{self.path} is not a counter state file (ignored; counters start from what is heard)")
            return
        self.records = {k: v for k, v in doc["records"].items() if isinstance(k, str) and isinstance(v, dict)}

    def _corrupt(self, why: str) -> None:
        self.counters["state_corrupt"] += 1
        self.error = why
        self.log.warning("counter_state_unreadable", path=str(self.path), error=why)

    def _kick(self) -> None:
        self._urgent.set()
