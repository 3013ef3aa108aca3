"""Crash-safe file replacement: write a temporary file, fsync it, rename it over the target, fsync the
directory. After a power cut the target holds the old bytes or the new ones, never a mix (rename(2) is
atomic on one filesystem; the directory fsync makes the rename itself durable)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# One fsync_dir: the release resolver (gateway/fleet/launch.py) is standard library only and imports
# nothing from `gateway`, so it holds it and this module takes it from there.
from gateway.fleet.launch import fsync_dir

__all__ = ["fsync_dir", "remove_durably", "sha256_file", "write_atomic"]


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` by `data` durably; the temporary file lives beside it (same filesystem)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_durably(path: Path) -> None:
    if path.exists():
        path.unlink()
        fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
