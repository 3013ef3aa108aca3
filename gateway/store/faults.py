"""Store faults (issue 15 item 2): naming why the database cannot be written, moving a corrupt file
aside, and creating database files with their mode set whatever the umask.

Reasons are one word each, shown in `gateway status` and the store's health: read-only, corrupt,
io_error, full, missing, newer_schema.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from pathlib import Path

from gateway.errors import StoreError, StoreUnavailable

# sqlite3 primary result codes (https://sqlite.org/rescode.html); extended codes keep them in the low byte.
SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 8, 10, 11, 13, 14, 26
DB_MODE = 0o640  # issue 16: SQLite's default 0644 & ~umask left the outbox world-readable
SIDE_FILES = ("-wal", "-shm")


def sqlite_code(exc: BaseException) -> int:
    """The primary SQLite result code carried by exc or anything in its cause chain (0 if none)."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlite_errorcode", None)
        if code:
            return int(code) & 0xFF
        seen = seen.__cause__ or seen.__context__
    return 0


def os_errno(exc: BaseException) -> int:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return 0


def fs_read_only(path: str) -> bool:
    """The filesystem holding path (or its nearest existing parent) is mounted read-only."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def classify(exc: BaseException, path: str) -> str:
    """Why the store at `path` failed with exc: one of the reason words above."""
    if isinstance(exc, StoreUnavailable):
        return exc.reason
    if not Path(path).parent.is_dir():
        return "missing"
    code, err = sqlite_code(exc), os_errno(exc)
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return "corrupt"
    if isinstance(exc, StoreError) and "newer than this gateway" in str(exc):
        return "newer_schema"
    if code == SQLITE_FULL or err == errno.ENOSPC:
        return "full"
    # A card that remounted itself read-only fails a commit with SQLITE_IOERR_WRITE (EROFS) first, then
    # SQLITE_READONLY; the mount flag says which it is.
    if code == SQLITE_READONLY or err == errno.EROFS or fs_read_only(path):
        return "read-only"
    return "io_error"


def move_aside(path: str, wall_s: float) -> str:
    """Rename a corrupt database (and its WAL) to <path>.corrupt-<UTC stamp>, kept for forensics.
    The shared-memory index is rebuilt by SQLite from the WAL, so it is removed, not kept."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall_s))
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    if os.path.exists(path):
        os.replace(path, target)
    if os.path.exists(path + "-wal"):
        os.replace(path + "-wal", target + "-wal")
    Path(path + "-shm").unlink(missing_ok=True)
    return target


def secure_files(path: str) -> None:
    """Create the database file with DB_MODE before SQLite does (an empty file is an empty database),
    and narrow the mode of an existing one. SQLite gives its -wal and -shm the database file's mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DB_MODE)
    except FileExistsError:
        pass
    else:
        try:
            os.fchmod(fd, DB_MODE)  # the umask applied to os.open's mode
        finally:
            os.close(fd)
    for p in (path, *(path + s for s in SIDE_FILES)):
        try:
            if os.stat(p).st_mode & 0o777 & ~DB_MODE:
                os.chmod(p, DB_MODE)
        except FileNotFoundError:
            pass


def unavailable(exc: BaseException, path: str) -> StoreUnavailable:
    if isinstance(exc, StoreUnavailable):
        return exc
    return StoreUnavailable(classify(exc, path), str(exc))


def is_fatal_sqlite(exc: sqlite3.Error, path: str) -> bool:
    """A failed statement that means the file cannot be written now, whatever a retry does."""
    return sqlite_code(exc) in (SQLITE_READONLY, SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_CANTOPEN) or fs_read_only(path)
