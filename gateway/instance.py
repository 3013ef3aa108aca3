"""One daemon per config: an exclusive flock on a lock file in the state directory and one in the
runtime directory, taken before anything else is opened (issue 15, item 4).

A second `gateway run` on the same config used to open the same outbox, unlink the running daemon's
control socket as "stale" and knock it off the broker. flock(2) is released by the kernel when the
holder dies (SIGKILL, power cut), so there is never a stale lock to clean up by hand.

Two places because either can be unusable: the state directory on an SD card gone read-only (then the
file may not be creatable) and the runtime directory on a tmpfs. A conflict on either refuses to start;
a directory that cannot hold a lock file is skipped with a warning, never a reason not to start (the
alarm path must not depend on the card).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import GatewayError

LOCK_NAME = "gateway.lock"


class AlreadyRunning(GatewayError):
    """Another daemon holds the lock of this config's state or runtime directory."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"PID {pid}" if pid else "another process"
        super().__init__(f"another gateway daemon ({holder}) already runs on this config: {path} is locked")


@dataclass
class InstanceLock:
    """The held locks (their open descriptors) and the directories that could not hold one."""

    held: list[tuple[Path, int]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def release(self) -> None:
        for _path, fd in self.held:
            os.close(fd)  # closing the descriptor releases the flock
        self.held.clear()


def _holder_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _lock_one(path: Path) -> int:
    """Lock `path` (created 0640 if missing) and write our PID into it; raise AlreadyRunning on conflict."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError:
        # A read-only card: an existing lock file can still be flocked through a read-only descriptor.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder_pid(fd)
        os.close(fd)
        raise AlreadyRunning(path, pid) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # read-only descriptor: the lock holds; only the PID hint is missing
    return fd


def acquire(dirs: list[Path]) -> InstanceLock:
    """Lock every distinct directory in `dirs`. AlreadyRunning if any is held by another process."""
    lock = InstanceLock()
    seen: set[Path] = set()
    try:
        for d in dirs:
            d = d.resolve()
            if d in seen:
                continue
            seen.add(d)
            try:
                d.mkdir(parents=True, exist_ok=True)
                lock.held.append((d / LOCK_NAME, _lock_one(d / LOCK_NAME)))
            except AlreadyRunning:
                raise
            except OSError as exc:
                lock.skipped.append((d, exc.strerror or str(exc)))
    except AlreadyRunning:
        lock.release()
        raise
    return lock
