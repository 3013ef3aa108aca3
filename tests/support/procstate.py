"""Process-wide state that tests must give back as they found it (tests/conftest.py checks after each)."""

from __future__ import annotations

import os


def current_umask() -> int:
    """The process's umask (reading it means setting it: put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
