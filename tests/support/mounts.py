"""Real filesystems for disk-fault tests: a small tmpfs, and an ext4 image that turns itself read-only
on the first error (errors=remount-ro, as Raspberry Pi OS mounts its root), broken on demand with
ext4's own trigger_fs_error. Needs root: without it the tests fail, never skip (CI runs as root)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def mount(*args: str) -> None:
    assert os.geteuid() == 0, "disk-fault tests mount filesystems and need root"
    subprocess.run(["mount", *args], check=True, capture_output=True)


@contextmanager
def tmpfs(mnt: Path, size: str = "8m") -> Iterator[Path]:
    mnt.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@contextmanager
def ext4_image(img: Path, mnt: Path, size_mib: int = 16) -> Iterator[tuple[Path, Path]]:
    mnt.mkdir(parents=True, exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    mount("-o", "loop,errors=remount-ro", str(img), str(mnt))
    try:
        yield img, mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        listed = subprocess.run(["losetup", "-j", str(img)], capture_output=True, text=True).stdout
        for line in listed.splitlines():  # every loop device on the image (autoclear once unused)
            subprocess.run(["losetup", "-d", line.split(":")[0]], check=False, capture_output=True)


def fail_ext4(mnt: Path, why: str = "test: card failing") -> None:
    """Make the kernel see an error on the ext4 mounted at `mnt`: it remounts it read-only at once."""
    dev = Path(subprocess.run(["findmnt", "-no", "SOURCE", str(mnt)], check=True, capture_output=True, text=True).stdout.strip()).name
    Path(f"/sys/fs/ext4/{dev}/trigger_fs_error").write_text(why + "\n")
