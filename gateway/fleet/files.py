"""The files beside the config that carry an apply across a restart: the last good config, the
pending marker and the committed state (docs/fleet.md "Files"). Each is replaced atomically."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec

from gateway.fleet.atomic import remove_durably, sha256_file, write_atomic


class Pending(msgspec.Struct):
    """Written before the swap; its presence at start means "not committed yet"."""

    version: str
    config_hash: str  # sha256 of the new config file's bytes
    previous_hash: str  # sha256 of the config it replaces (now in .last-good)
    deadline_s: float
    uplink_was_up: bool
    applied_wall_s: float
    ports_closed_before: list[str] = []  # not open at apply time: not held against the new config
    starts: int = 0  # daemon starts on the new config; past MAX_STARTS it is a crash loop


class State(msgspec.Struct):
    """What the retained status reports: the committed config and the last apply's error."""

    config_version: str = ""
    config_hash: str = ""
    committed_wall_s: float = 0.0
    last_apply_version: str = ""
    last_apply_error: str = ""


class ConfigFiles:
    def __init__(self, config_path: str | Path) -> None:
        self.config = Path(config_path).resolve()
        self.last_good = self.config.with_name(self.config.name + ".last-good")
        self.pending_path = self.config.with_name(self.config.name + ".pending")
        self.state_path = self.config.with_name(self.config.name + ".fleet.json")
        self.staging = self.config.with_name(self.config.name + ".staging")
        self.lock_path = self.config.with_name(self.config.name + ".lock")
        self._hash_key: tuple[int, int, int] | None = None
        self._hash = ""

    def config_hash(self) -> str:
        return sha256_file(self.config)

    def pending(self) -> Pending | None:
        try:
            return msgspec.json.decode(self.pending_path.read_bytes(), type=Pending)
        except FileNotFoundError:
            return None
        except (msgspec.DecodeError, msgspec.ValidationError, OSError):
            # A torn marker cannot happen (atomic write); an unreadable one is treated as "pending,
            # nothing known": the caller compares hashes and rolls back if in doubt.
            return Pending("?", "", "", 60.0, False, 0.0, starts=99)

    def write_pending(self, p: Pending) -> None:
        write_atomic(self.pending_path, msgspec.json.encode(p))

    def clear_pending(self) -> None:
        remove_durably(self.pending_path)

    def state(self) -> State:
        try:
            return msgspec.json.decode(self.state_path.read_bytes(), type=State)
        except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
            return State()

    def update_state(self, **fields: Any) -> State:
        st = msgspec.structs.replace(self.state(), **fields)
        write_atomic(self.state_path, json.dumps(msgspec.to_builtins(st), ensure_ascii=False).encode())
        return st

    def restore_last_good(self) -> None:
        write_atomic(self.config, self.last_good.read_bytes())

    def status_fields(self) -> dict[str, Any]:
        """For the retained status (`config` key): version, hash, pending, last apply error."""
        st = self.state()
        p = self.pending()
        try:
            st_ = self.config.stat()
            key = (st_.st_mtime_ns, st_.st_size, st_.st_ino)
            if key != self._hash_key:  # status is asked every few seconds: hash only a changed file
                self._hash_key, self._hash = key, self.config_hash()
            running = self._hash
        except OSError:
            running = ""
        return {"config_version": st.config_version, "config_hash": running, "pending_version": p.version if p else "",
                "last_apply_version": st.last_apply_version, "last_apply_error": st.last_apply_error,
                "committed_wall_s": st.committed_wall_s}


def now_wall() -> float:
    return time.time()
