#!/usr/bin/python3
"""The release resolver (issue 20 "Software update with rollback"), installed by scripts/install.sh as
/opt/courtyard-gateway/launch (root's) and run by the daemon unit's `ExecStartPre=+/opt/courtyard-gateway/launch
resolve`: with full privileges, before any code of the release the `venv` link names runs, it owns the
link switch's `release.pending` marker and decides at every start:

  no marker                      -> nothing to do;
  marker, link still on the old  -> a cut before the switch's rename: marker dropped, old release runs;
  marker, >= MAX_STARTS starts   -> crash loop: link switched back, old release runs;
  marker, deadline already past  -> not committed in time (e.g. the root updater died): switched back;
  otherwise                      -> the start is counted in the marker.

Committing and the deadline while the release runs are the root updater's (gateway/fleet/updater.py,
unit courtyard-gateway-update.service); this file is the start-time half, so a release whose code is
broken cannot keep itself installed. Standard library only, Python 3.11, no import from `gateway`: it
must work whatever the venv holds. It never fails the start: the alarm path must not depend on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

MAX_STARTS = 3  # as ConfigCommit: a release that cannot stay up three starts in a row is not going to
DEADLINE_GRACE_S = 5.0  # the root updater rolls back at the deadline; a start after it + this grace does too


class SwitchError(Exception):
    """The staged release cannot be switched to (incomplete venv, no current link)."""


@dataclasses.dataclass
class ReleasePending:
    version: str
    new: str  # link target, relative: venvs/<version>-<hash>
    previous: str
    deadline_s: float
    starts: int = 0
    sha256: str = ""
    uplink_was_up: bool = False
    boot_id: str = ""  # the window below is measured on this boot's CLOCK_BOOTTIME (NTP steps cannot move it)
    switched_s: float = 0.0
    ready: bool = False  # the unit was active (READY=1 seen by systemd) while the root updater watched
    ports_closed_before: list[str] = dataclasses.field(default_factory=list)  # not held against the release


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def boot_s() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """write-temp + fsync + rename + directory fsync: after a power cut, the old bytes or the new."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class ReleaseSwitch:
    """The `venv` link of a release root (install.sh layout: venvs/<version>-<hash>, venv -> venvs/...)."""

    def __init__(self, opt: Path | str) -> None:
        self.opt = Path(opt)
        self.link = self.opt / "venv"
        self.marker = self.opt / "release.pending"
        self.state_path = self.opt / "release.state.json"
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

    def state(self) -> dict[str, object]:
        """committed_version/_sha256/_wall_s, last_update_version/_error (docs/fleet.md)."""
        try:
            doc = json.loads(self.state_path.read_bytes())
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def record(self, **fields: object) -> None:
        write_atomic(self.state_path, json.dumps({**self.state(), **fields}, sort_keys=True).encode())

    def switch(self, new: str, version: str, deadline_s: float, **extra: object) -> ReleasePending:
        if not (self.opt / new / ".complete").exists():
            raise SwitchError(f"{new} is not a complete venv (.complete missing)")
        p = ReleasePending(version, new, self.current(), deadline_s, boot_id=boot_id(), switched_s=boot_s(), **extra)  # type: ignore[arg-type]
        self.write(p)  # marker first: a cut after it is resolved at the next start
        self._point(new)
        return p

    def write(self, p: ReleasePending) -> None:
        write_atomic(self.marker, json.dumps(dataclasses.asdict(p)).encode())

    def pending(self) -> ReleasePending | None:
        try:
            doc = json.loads(self.marker.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            doc = {}
        known = {f.name for f in dataclasses.fields(ReleasePending)}
        try:  # a newer release may add fields: an older launcher ignores them
            return ReleasePending(**{k: v for k, v in doc.items() if k in known})
        except TypeError:  # unreadable marker: resolved as a crash loop (switch back if we can)
            return ReleasePending("?", "?", "", 0.0, starts=MAX_STARTS)

    def elapsed_s(self, p: ReleasePending) -> float:
        return boot_s() - p.switched_s if p.boot_id == boot_id() else 0.0

    def at_start(self) -> ReleasePending | None:
        """Before the release runs: the switch to watch, or None (nothing pending or resolved here)."""
        p = self.pending()
        if p is None:
            return None
        if self.drop_if_cut(p):
            return None
        if p.starts >= MAX_STARTS:
            self.rollback(p, f"crash loop: {p.starts} starts without becoming ready")
            return None
        if p.boot_id != boot_id():  # rebooted (power cut) while pending: a fresh window on this boot
            p.boot_id, p.switched_s = boot_id(), boot_s()
        elif self.elapsed_s(p) > p.deadline_s + DEADLINE_GRACE_S:
            self.rollback(p, f"not committed within {p.deadline_s:g} s ({'ready, not healthy' if p.ready else 'never sent READY'})")
            return None
        p.starts += 1
        self.write(p)
        return p

    def drop_if_cut(self, p: ReleasePending) -> bool:
        """The link never left the previous release (cut before the rename): drop the marker."""
        if self.current() == p.new:
            return False
        self.marker.unlink(missing_ok=True)
        fsync_dir(self.opt)
        self.last_error = "interrupted before the switch; previous release kept"
        self.record(last_update_version=p.version, last_update_error=self.last_error)
        return True

    def commit(self, p: ReleasePending, wall_s: float | None = None) -> None:
        self.record(committed_version=p.version, committed_sha256=p.sha256, committed_wall_s=wall_s or time.time(),
                    last_update_version=p.version, last_update_error="")
        self.marker.unlink(missing_ok=True)
        fsync_dir(self.opt)
        self.last_error = ""

    def rollback(self, p: ReleasePending, reason: str) -> None:
        if p.previous:
            self._point(p.previous)
        self.record(last_update_version=p.version, last_update_error=reason[:400])
        self.marker.unlink(missing_ok=True)
        fsync_dir(self.opt)
        self.last_error = reason


def main(argv: list[str] | None = None) -> int:
    """launch [--opt DIR] resolve: decide a pending switch and exit 0 (the unit's ExecStartPre=+).
    launch [--opt DIR] GATEWAY-ARGS...: the same, then exec venv/bin/gateway (units from before the
    root updater, whose ExecStart was this file)."""
    args = list(sys.argv[1:] if argv is None else argv)
    opt = Path(__file__).resolve().parent
    while args and args[0] in ("--opt", "--release-pub"):  # --release-pub: accepted, unused (old units)
        flag, value, args = args[0], args[1], args[2:]
        opt = Path(value) if flag == "--opt" else opt
    sw = ReleaseSwitch(opt)
    try:
        p = sw.at_start()
    except OSError as exc:  # never a precondition of the alarm path: run what the link names
        print(f"launch: release check failed ({exc}); starting the linked release", file=sys.stderr, flush=True)
        p = None
    if sw.last_error:
        print(f"launch: {sw.last_error}", file=sys.stderr, flush=True)
    elif p is not None:
        print(f"launch: starting pending release {p.new} (start {p.starts} of {MAX_STARTS})", file=sys.stderr, flush=True)
    if args == ["resolve"]:
        return 0
    gateway = [str(opt / "venv/bin/gateway"), *args]
    os.execve(gateway[0], gateway, {**os.environ, "CG_RELEASE_ROOT": str(opt)})
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
