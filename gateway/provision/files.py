"""Atomic, owner-aware file writes for provisioning, inside an optional staging root.

Secrets are created with their final mode (never world-readable for an instant), written to a temp
file beside the target, fsynced and renamed, so a power cut leaves the old file or the new, not half.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import ConfigError


@dataclass(frozen=True)
class Owner:
    """uid/gid to give files; None when running unprivileged or the user does not exist (yet)."""

    uid: int
    gid: int


def _field(db: Path, name: str, index: int) -> int | None:
    """Numeric field of `name` in a passwd/group style file, read from the (staging) root's /etc."""
    try:
        text = db.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) > index and parts[0] == name and parts[index].isdigit():
            return int(parts[index])
    return None


def lookup_owner(root: Path, user: str) -> Owner | None:
    """The service user's uid and primary gid from root/etc/passwd (works for a staging root too).
    None when not root (chown would fail) or when the user is not there."""
    if os.geteuid() != 0:
        return None
    uid = _field(root / "etc/passwd", user, 2)
    gid = _field(root / "etc/passwd", user, 3)
    if uid is None or gid is None:
        return None
    return Owner(uid, gid)


def lookup_group(root: Path, group: str) -> int | None:
    return _field(root / "etc/group", group, 2)


def write_atomic(path: Path, data: bytes, mode: int, owner: Owner | None = None, group: int | None = None) -> bool:
    """Write `data` to `path` with `mode` (and owner/group when given). Returns False, touching nothing,
    when the file already has exactly that content, mode and ownership: re-provisioning is a no-op."""
    uid = owner.uid if owner else -1
    gid = owner.gid if owner else (group if group is not None else -1)
    try:
        st = path.stat()
        same_meta = (st.st_mode & 0o7777) == mode and uid in (-1, st.st_uid) and gid in (-1, st.st_gid)
        if same_meta and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode & 0o600)
        with os.fdopen(fd, "wb") as f:
            if uid != -1 or gid != -1:
                os.fchown(f.fileno(), uid, gid)
            os.fchmod(f.fileno(), mode)  # after chown: chown clears set-id bits, and umask is bypassed
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError([f"{path}: cannot write ({exc.strerror})"]) from None
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return True


def ensure_dir(path: Path, mode: int, group: int | None = None) -> None:
    """Create `path` (root-owned, `group` if known) with `mode`; an existing directory keeps its owner."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        if group is not None and os.geteuid() == 0:
            os.chown(path, 0, group)
        os.chmod(path, mode)
