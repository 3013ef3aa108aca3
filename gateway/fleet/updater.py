"""The root side of a software update (issue 20; docs/fleet.md "Trust boundaries"): run by the oneshot
unit courtyard-gateway-update.service, which courtyard-gateway-update.path starts when the daemon writes
its request file, with the code of the release committed at that moment:

    /opt/courtyard-gateway/venv/bin/python -m gateway.fleet.updater --request /var/lib/courtyard-gateway/release/request.json

The daemon (unprivileged, no write access to /opt) only downloads and asks. This process trusts none
of its verdicts: it re-verifies the manifest's Ed25519 signature with root's release.pub, copies the
bundle out of the daemon's directory while hashing it (the copy is what it checked and what it
unpacks), stages the venv, switches the link, restarts the daemon, then supervises the commit: the new
release writes `health.json` beside the request; healthy and the unit active -> committed; the deadline
passed -> switched back and restarted. At most, a forged request installs a release the release key signed
and that is not older than the one committed or running (the rollback floor, release.check_release).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from gateway.errors import CommandRejected, GatewayError
from gateway.fleet.install import install_release, release_name
from gateway.fleet.launch import ReleasePending, ReleaseSwitch, fsync_dir
from gateway.fleet.release import CHUNK, ReleaseManifest, check_release, load_release_key, verify_manifest

POLL_S = 0.5
MAX_REQUEST_BYTES = 64 * 1024
DEADLINE_RANGE_S = (10.0, 900.0)  # the `update` command checks against it too (update.py): a forged request gets no other
HEALTH = "health.json"


class UpdateRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """request.json, written by the daemon into its state directory (the only thing it can ask)."""

    id: str
    manifest: ReleaseManifest
    commit_deadline_s: float
    uplink_was_up: bool = False
    ports_closed_before: list[str] = []


class Health(msgspec.Struct, frozen=True):
    """health.json, written by the new release's watcher (update.py) for the switch it names."""

    release: str
    switched_s: float
    healthy: bool
    why: list[str] = []


@dataclass
class Hooks:
    """What systemctl does on a gateway; a test harness passes its own."""

    restart: Callable[[], None]
    is_active: Callable[[], bool]


def bundle_path(request_dir: Path, m: ReleaseManifest) -> Path:
    """Where the daemon downloads this release to; never a path the request names."""
    return request_dir / f"courtyard-gateway-{release_name(m.version, m.sha256)}.tar.gz"


def read_json(path: Path, limit: int = MAX_REQUEST_BYTES) -> bytes:
    """A regular file in the daemon's directory, not followed if it is a link, at most `limit` bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device would block or never end
            raise OSError(f"{path.name} is not a regular file")
        return f.read(limit + 1)[:limit]


def take_request(path: Path) -> UpdateRequest:
    """Read and remove the request (removed first: it is handled once, whatever follows)."""
    data = read_json(path)
    path.unlink(missing_ok=True)
    try:
        return msgspec.json.decode(data, type=UpdateRequest)
    except msgspec.DecodeError as exc:
        raise CommandRejected("bad_release", f"request: {exc}"[:200]) from None


def copy_checked(src: Path, dest: Path, m: ReleaseManifest) -> None:
    """Copy the daemon's download into root's directory, hashing what is copied: the file checked is
    the file unpacked, whatever the daemon does to its own copy meanwhile."""
    dest.parent.mkdir(mode=0o700, exist_ok=True)
    h, size = hashlib.sha256(), 0
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f, open(dest, "wb") as out:
        while size <= m.size and (block := f.read(CHUNK)):
            h.update(block)
            out.write(block)
            size += len(block)
    if size != m.size or h.hexdigest() != m.sha256.lower():
        dest.unlink(missing_ok=True)
        raise CommandRejected("release_hash_mismatch", f"release {m.version[:32]}: bundle differs from the signed manifest")


def install_request(req: UpdateRequest, request_dir: Path, sw: ReleaseSwitch, pub: Path) -> ReleasePending | None:
    """Verify, stage and switch; None when that release already runs. Raises GatewayError/OSError with
    the link untouched."""
    m = req.manifest
    try:
        key = load_release_key(pub)
    except (OSError, ValueError) as exc:
        raise CommandRejected("no_release_key", f"{pub}: {exc}"[:200]) from None
    verify_manifest(m, key)  # root's key, not the daemon's word
    check_release(m, sw)  # and root's own record of what runs: no way back to an older signed release
    if sw.pending() is not None:
        raise CommandRejected("update_pending", "an update is already pending")
    name = release_name(m.version, m.sha256)
    if sw.current() == f"venvs/{name}":
        return None
    src = bundle_path(request_dir, m)
    copy = sw.opt / "incoming" / src.name
    try:
        copy_checked(src, copy, m)
        rel = install_release(copy, sw.opt, m.version, m.sha256, keep=(sw.current(),))
    finally:
        copy.unlink(missing_ok=True)
    src.unlink(missing_ok=True)  # staged: the daemon's download is not needed again
    deadline_s = min(max(float(req.commit_deadline_s), DEADLINE_RANGE_S[0]), DEADLINE_RANGE_S[1])
    (request_dir / HEALTH).unlink(missing_ok=True)  # a report about an earlier switch must not count
    return sw.switch(rel, m.version, deadline_s, sha256=m.sha256, uplink_was_up=bool(req.uplink_was_up),
                     ports_closed_before=[str(p) for p in req.ports_closed_before][:64])


def read_health(path: Path, p: ReleasePending) -> Health | None:
    """The new release's report, if it is about this switch."""
    try:
        h = msgspec.json.decode(read_json(path), type=Health)
    except (OSError, msgspec.DecodeError):
        return None
    return h if (h.release, h.switched_s) == (p.new, p.switched_s) else None


def supervise(sw: ReleaseSwitch, health: Path, hooks: Hooks, poll_s: float = POLL_S) -> str:
    """Until the pending switch is resolved: commit once the release reports healthy while its unit
    is active; switch back and restart at the deadline. Returns committed | rolled_back | resolved."""
    while True:
        p = sw.pending()
        if p is None or sw.drop_if_cut(p):
            return "resolved"  # by ExecStartPre (crash loop, deadline passed at a start) or nothing pending
        h = read_health(health, p)
        active = hooks.is_active()
        if active and not p.ready:
            p.ready = True
            sw.write(p)
        if h is not None and h.healthy and active:
            sw.commit(p, time.time())
            _say(f"release {p.new} committed")
            return "committed"
        if sw.elapsed_s(p) >= p.deadline_s:
            why = (h.why if h is not None else []) or [("unit active, no health report" if active else "never became ready (READY=1)")]
            sw.rollback(p, f"not healthy within {p.deadline_s:g} s: {'; '.join(why)}"[:400])
            _say(f"{sw.last_error}; switched back to {p.previous}")
            hooks.restart()
            return "rolled_back"
        time.sleep(poll_s)


def handle(request: Path, sw: ReleaseSwitch, pub: Path, hooks: Hooks, poll_s: float = POLL_S) -> str:
    """What the unit does once started: a request -> install, switch, restart; then supervise whatever
    switch is pending (also one left by a reboot). Returns failed | unchanged | the supervise outcome."""
    if request.exists() or request.is_symlink():
        req = None
        try:
            if request.parent.is_symlink():  # the daemon owns its parent: it must not point us elsewhere
                raise OSError(f"{request.parent} is a symbolic link")
            req = take_request(request)
            p = install_request(req, request.parent, sw, pub)
        except (GatewayError, OSError, ValueError) as exc:
            error = str(exc)[:300]
            version = req.manifest.version if req is not None else ""
            sw.record(last_update_version=version, last_update_error=error, failed_request=req.id if req else "")
            _say(f"update {version} refused: {error}")
            return "failed"
        if p is None:
            return "unchanged"
        fsync_dir(sw.opt)
        _say(f"switched to {p.new}; restarting the daemon")
        hooks.restart()
    return supervise(sw, request.parent / HEALTH, hooks, poll_s)


def _say(text: str) -> None:
    print(f"courtyard-gateway-update: {text}", file=sys.stderr, flush=True)  # the unit's journal


def _systemctl(unit: str) -> Hooks:
    def restart() -> None:
        subprocess.run(["systemctl", "--no-block", "restart", unit], check=False, timeout=60)

    def is_active() -> bool:
        return subprocess.run(["systemctl", "--quiet", "is-active", unit], check=False, timeout=30).returncode == 0

    return Hooks(restart, is_active)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.fleet.updater", description=__doc__.split("\n\n")[0])
    ap.add_argument("--request", type=Path, default=Path("/var/lib/courtyard-gateway/release/request.json"))
    ap.add_argument("--opt", type=Path, default=Path("/opt/courtyard-gateway"))
    ap.add_argument("--release-pub", type=Path, default=Path("/etc/courtyard-gateway/release.pub"))
    ap.add_argument("--unit", default="courtyard-gateway.service")
    a = ap.parse_args(argv)
    outcome = handle(a.request, ReleaseSwitch(a.opt), a.release_pub, _systemctl(a.unit))
    _say(outcome)
    return 1 if outcome == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
