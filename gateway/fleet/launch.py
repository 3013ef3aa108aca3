#!/usr/bin/python3
"""The release launcher (issue 20 "Software update with rollback"), installed by scripts/install.sh as
/opt/courtyard-gateway/launch and run by the unit's ExecStart. It owns the `venv` link switch and its
`release.pending` marker, and decides at every start, *before* any code of the new release runs:

  no marker                      -> exec the active release's `gateway` (no parent process left);
  marker, link still on the old  -> a cut before the switch's rename: marker dropped, old release runs;
  marker, > MAX_STARTS starts    -> crash loop: link switched back, old release runs;
  marker, deadline already past  -> not committed in time (e.g. killed by TimeoutStartSec): switched back;
  otherwise                      -> start counted, the new release runs as a child of this launcher,
                                    which relays its sd_notify messages (READY=1 noted in the marker) and
                                    switches back and restarts if the marker is still there at the deadline.

Committing is the new release's job (gateway/fleet/update.py: ready, healthy, uplink, selftest subset);
this file only enforces the deadline, so a release whose code is broken cannot keep itself installed.
Standard library only, Python 3.11, no import from `gateway`: it must work whatever the venv holds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

MAX_STARTS = 3  # as ConfigCommit: a release that cannot stay up three starts in a row is not going to
DEADLINE_GRACE_S = 5.0  # the release's own watcher rolls back at the deadline; this launcher only after
STOP_GRACE_S = 25.0  # SIGTERM -> SIGKILL for a child that ignores the stop (unit's TimeoutStopSec is 30 s)
RESTART_EXIT = 75  # gateway.fleet.RESTART_EXIT (EX_TEMPFAIL): systemd's Restart=always starts us again
DEFAULT_PUB = "/etc/courtyard-gateway/release.pub"


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
    ready: bool = False  # the new release sent READY=1 (seen by this launcher)
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
        if self.current() != p.new:
            self.marker.unlink(missing_ok=True)  # cut before the rename: the previous release never left
            fsync_dir(self.opt)
            self.last_error = "interrupted before the switch; previous release kept"
            self.record(last_update_version=p.version, last_update_error=self.last_error)
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


def _supervise(sw: ReleaseSwitch, p: ReleasePending, argv: list[str], env: dict[str, str]) -> int:
    """Run the pending release as our child until it exits; switch back at the deadline."""
    upstream = os.environ.get("NOTIFY_SOCKET", "")
    relay = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    relay.bind(f"\0courtyard-launch-{os.getpid()}")
    relay.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # as NotifyAccess=main: only the child speaks
    env = {**env, "NOTIFY_SOCKET": f"@courtyard-launch-{os.getpid()}"}
    pid = os.fork()
    if pid == 0:  # the child: its sd_notify watchdog must think it is the watched process
        if "WATCHDOG_USEC" in env:
            env["WATCHDOG_PID"] = str(os.getpid())
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    def forward(signum: int, frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass  # already gone: waitpid below reports it

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    up = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) if upstream else None
    up_addr = "\0" + upstream[1:] if upstream.startswith("@") else upstream
    watching = True
    while True:
        try:
            readable, _, _ = select.select([relay], [], [], 0.5)
        except InterruptedError:
            readable = []
        msg = _from(relay, pid) if readable else None
        if msg is not None:
            if up is not None:
                try:
                    up.sendto(msg, up_addr)  # from our PID: NotifyAccess=main accepts it
                except OSError:
                    pass
            if watching and b"READY=1" in msg.split(b"\n") and not p.ready:
                p.ready = True
                if sw.pending() is not None:
                    sw.write(p)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        if not watching:
            continue
        if sw.pending() is None:
            watching = False  # committed (or rolled back) by the release itself: only relay from now on
        elif sw.elapsed_s(p) > p.deadline_s + DEADLINE_GRACE_S:
            sw.rollback(p, f"not committed within {p.deadline_s:g} s ({'ready, not healthy' if p.ready else 'never sent READY'})")
            print(f"launch: {sw.last_error}; switched back to {p.previous}", file=sys.stderr, flush=True)
            return _stop(pid)


def _from(relay: socket.socket, pid: int) -> bytes | None:
    """One notify datagram, if the release's main process sent it (an abstract socket is reachable by
    any local process: a forged READY=1 must not count)."""
    msg, ancillary, _flags, _addr = relay.recvmsg(4096, socket.CMSG_SPACE(12))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= 12:
            if struct.unpack("3i", data[:12])[0] == pid:
                return msg
    return None


def _stop(pid: int) -> int:
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < end:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return RESTART_EXIT
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return RESTART_EXIT


def main(argv: list[str] | None = None) -> int:
    """launch [--opt DIR] [--release-pub FILE] GATEWAY-ARGS... (e.g. `run --config /etc/.../gateway.toml`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    opt, pub = Path(__file__).resolve().parent, DEFAULT_PUB
    while args and args[0] in ("--opt", "--release-pub"):
        flag, value, args = args[0], args[1], args[2:]
        opt, pub = (Path(value), pub) if flag == "--opt" else (opt, value)
    sw = ReleaseSwitch(opt)
    try:
        p = sw.at_start()
    except OSError as exc:  # never a precondition of the alarm path: run what the link names
        print(f"launch: release check failed ({exc}); starting the linked release", file=sys.stderr, flush=True)
        p = None
    if sw.last_error:
        print(f"launch: {sw.last_error}", file=sys.stderr, flush=True)
    env = {**os.environ, "CG_RELEASE_ROOT": str(opt), "CG_RELEASE_PUB": pub}
    gateway = [str(opt / "venv/bin/gateway"), *args]
    if p is None:
        os.execve(gateway[0], gateway, env)
    env["CG_RELEASE_WATCHED"] = "1"
    return _supervise(sw, p, gateway, env)


if __name__ == "__main__":
    sys.exit(main())
