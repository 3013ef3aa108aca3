"""The ballast file: disk space held back beside the database so alarms still commit when the disk fills.

On SQLITE_FULL the writer deletes it (giving SQLite `ballast_bytes` to grow its WAL and pages for the
alarm), raises the local fault "disk_full" and rejects telemetry; when free space returns it is made
again with posix_fallocate (real blocks, not a sparse file) and the fault clears.
"""

from __future__ import annotations

import os
from pathlib import Path

MIN_RECOVER_MARGIN_BYTES = 1 << 20  # free space wanted beyond the ballast before we call the disk healthy


class Ballast:
    def __init__(self, db_path: str, size_bytes: int) -> None:
        self.path = Path(db_path + ".ballast")
        self.size_bytes = size_bytes

    def present(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size_bytes
        except FileNotFoundError:
            return False

    def make(self) -> None:
        """Create (or complete) the ballast. Raises OSError (ENOSPC) when the space is not there."""
        if self.size_bytes <= 0 or self.present():
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.size_bytes)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)  # a partial ballast would only hide how full the disk is
            raise
        os.close(fd)

    def release(self) -> bool:
        """Give the space back to the filesystem. True when there was a ballast to release."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    def free_bytes(self) -> int:
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize

    def room_to_recover(self) -> bool:
        """Enough free space to remake the ballast and still leave the database a margin."""
        return self.free_bytes() >= self.size_bytes + max(MIN_RECOVER_MARGIN_BYTES, self.size_bytes)
