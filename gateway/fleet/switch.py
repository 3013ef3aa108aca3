"""Release switch (issue 20 "Software update with rollback"), the part that must survive a power cut:
the `venv` symlink of /opt/courtyard-gateway (scripts/install.sh layout) is switched to a staged,
complete venv by one rename, with a pending marker written first; the next start commits or switches
back, like ConfigCommit does for configs. Not wired yet: the `update` command and the launcher that
must run `at_start` outside the venv are listed in docs/fleet.md "Not built yet"."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from gateway.errors import GatewayError
from gateway.fleet.atomic import fsync_dir, remove_durably, write_atomic

MAX_STARTS = 3


class SwitchError(GatewayError):
    """The staged release cannot be switched to (incomplete venv, no current link)."""


class ReleasePending(msgspec.Struct):
    version: str
    new: str  # link target, relative: venvs/<version>-<hash>
    previous: str
    deadline_s: float
    starts: int = 0


class ReleaseSwitch:
    def __init__(self, opt: Path) -> None:
        self.opt = opt
        self.link = opt / "venv"
        self.marker = opt / "release.pending"
        self.last_error = ""

    def current(self) -> str:
        return os.readlink(self.link)

    def _point(self, target: str) -> None:
        """Replace the link in one rename (ln -sfn venv.new && mv -T, as install.sh does)."""
        tmp = self.opt / "venv.new"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, self.link)
        fsync_dir(self.opt)

    def switch(self, new: str, version: str, deadline_s: float) -> ReleasePending:
        if not (self.opt / new / ".complete").exists():
            raise SwitchError(f"{new} is not a complete venv (.complete missing)")
        p = ReleasePending(version, new, self.current(), deadline_s)
        write_atomic(self.marker, msgspec.json.encode(p))  # marker first: a cut after it is resolved at start
        self._point(new)
        return p

    def pending(self) -> ReleasePending | None:
        try:
            return msgspec.json.decode(self.marker.read_bytes(), type=ReleasePending)
        except FileNotFoundError:
            return None

    def at_start(self) -> ReleasePending | None:
        """Before the release runs: the switch to watch, or None (nothing pending or resolved here)."""
        p = self.pending()
        if p is None:
            return None
        now = self.current()
        if now != p.new:
            remove_durably(self.marker)  # cut before the rename: the previous release never left
            self.last_error = "interrupted before the switch; previous release kept"
            return None
        if p.starts >= MAX_STARTS:
            self.rollback(p, f"crash loop: {p.starts} starts without becoming ready")
            return None
        p.starts += 1
        write_atomic(self.marker, msgspec.json.encode(p))
        return p

    def commit(self, p: ReleasePending) -> None:
        remove_durably(self.marker)
        self.last_error = ""

    def rollback(self, p: ReleasePending, reason: str) -> None:
        self._point(p.previous)
        remove_durably(self.marker)
        self.last_error = reason
