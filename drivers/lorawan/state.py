"""The network server's persistent state (sessions, frame counters, used DevNonces) as one JSON file in
the driver's state directory, replaced atomically (temp file + rename) so a power cut leaves the old or
the new file, never half of one. Keys are written mode 0600: the file holds session keys.

Write budget on an SD card: counters are flushed at most every `flush_s` (a late flush only makes the
counter lag, which can never reject a genuine frame); joins and downlink-counter reservations are
written at once and fsync'd. A read-only or missing directory leaves the server in memory (health says so).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


class StateFile:
    def __init__(self, directory: Path | None, name: str) -> None:
        self.path = directory / name if directory else None
        self.error = "" if directory else "no state directory configured"
        self.writes = 0

    def load(self) -> dict[str, Any]:
        """The last saved state, {} when there is none; an unreadable file is kept aside, not trusted."""
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or data.get("version") != 1:
                raise ValueError("unknown state format")
            return data
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.error = f"state file {self.path.name} unreadable ({exc}); starting empty"
            with contextlib.suppress(OSError):
                self.path.rename(self.path.with_suffix(".corrupt"))
            return {}

    def save(self, data: dict[str, Any], durable: bool) -> bool:
        """Write atomically; False (and `error` set) when the directory refuses: the caller keeps running."""
        if self.path is None:
            return False
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({**data, "version": 1}, f, separators=(",", ":"))
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, self.path)
            if durable:
                dfd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror or exc}; sessions and counters kept in memory only"
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        self.error = ""
        self.writes += 1
        return True
