"""The `update` and `update_status` commands (issue 20 "Software update with rollback") and the new
release's own commit check. Contract: docs/fleet.md "Software update with rollback".

update (this unprivileged daemon): verify the Ed25519-signed manifest -> download into the state
directory (resumable, rate-limited, hash-checked; a worker thread beside the alarm path) -> write
`request.json` there. The daemon cannot write /opt: the root updater (gateway/fleet/updater.py, started
by courtyard-gateway-update.path) re-verifies, stages, switches and restarts it.

After the restart this release's `watch_release` reports to the root updater in `health.json`: ready,
healthy (ConfigCommit's `unhealthy()`), acknowledged by the broker if the uplink was up before, the
selftest subset passed. The root updater commits, or switches back at the deadline.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

import gateway
from gateway import log as logsetup
from gateway.control.client import DaemonUnavailable, call
from gateway.errors import CommandRejected, GatewayError
from gateway.fleet.commit import POLL_S, unhealthy
from gateway.fleet.atomic import write_atomic
from gateway.fleet.install import release_name
from gateway.fleet.launch import ReleasePending, ReleaseSwitch
from gateway.fleet.release import ReleaseManifest, check_release, download, load_release_key, release_version, verify_manifest
from gateway.fleet.runner import RUNTIME
from gateway.fleet.updater import DEADLINE_RANGE_S, HEALTH, UpdateRequest, bundle_path

if TYPE_CHECKING:
    from gateway.daemon import Daemon
    from gateway.fleet.api import FleetApi

DEFAULT_DEADLINE_S = 180.0  # a Pi 3 starts the daemon in 10-20 s; the uplink may take a reconnect backoff
RATE_RANGE_BPS = (8_000.0, 10_000_000.0)
DEFAULT_RATE_BPS = 256_000.0  # ~2 Mbit/s: an LTE modem shared with the alarm backlog
REQUEST = "request.json"


@dataclass
class Progress:
    """The update this daemon is working on (phases before the restart; after it, the marker says)."""

    phase: str = "idle"  # idle | downloading | installing (handed to the root updater) | failed
    version: str = ""
    of: int = 0
    partial: str = ""  # the download's .partial file: `bytes` is its size, read when asked
    error: str = ""
    request_id: str = ""  # the root updater records a refusal under this id (`failed_request`)


PROGRESS = Progress()


def release_root() -> ReleaseSwitch | None:
    """CG_RELEASE_ROOT (tests, old units that started through the launcher), or the install.sh layout
    this venv sits in (/opt/courtyard-gateway/venvs/<name>); None when run from a checkout."""
    root = os.environ.get("CG_RELEASE_ROOT")
    if not root and Path(sys.prefix).parent.name == "venvs":
        root = str(Path(sys.prefix).parent.parent)
    return ReleaseSwitch(root) if root and (Path(root) / "venv").is_symlink() else None


def status_fields() -> dict[str, Any]:
    """`update_status`, and the retained status's `update` object (docs/fleet.md)."""
    sw = release_root()
    st = sw.state() if sw is not None else {}
    p = sw.pending() if sw is not None else None
    try:
        got = os.stat(PROGRESS.partial).st_size if PROGRESS.phase == "downloading" else (PROGRESS.of if PROGRESS.of and PROGRESS.phase != "failed" else 0)
    except OSError:
        got = 0
    try:
        release = os.readlink(sw.link).removeprefix("venvs/") if sw is not None else ""
    except OSError:
        release = ""
    if PROGRESS.phase == "installing" and PROGRESS.request_id and st.get("failed_request") == PROGRESS.request_id:
        PROGRESS.phase, PROGRESS.error = "failed", str(st.get("last_update_error", ""))  # refused by the root updater
    return {"running_version": gateway.__version__, "release": release,
            "phase": "pending" if p is not None and PROGRESS.phase in ("idle", "installing") else PROGRESS.phase,
            "version": PROGRESS.version or (p.version if p else ""), "bytes": got, "of": PROGRESS.of,
            "pending_version": p.version if p else "", "pending_starts": p.starts if p else 0,
            "committed_version": st.get("committed_version", ""), "committed_sha256": st.get("committed_sha256", ""),
            "committed_wall_s": st.get("committed_wall_s", 0.0),
            "last_update_version": st.get("last_update_version", ""),
            "last_update_error": PROGRESS.error or st.get("last_update_error", "")}


def parse_update(args: dict[str, Any]) -> tuple[ReleaseManifest, float, float]:
    """The manifest plus `commit_deadline_s` and `rate_bps`, or CommandRejected("bad_release")."""
    extra = {k: args[k] for k in ("commit_deadline_s", "rate_bps") if k in args}
    try:
        m = msgspec.convert({k: v for k, v in args.items() if k not in extra}, ReleaseManifest)
    except msgspec.ValidationError as exc:
        raise CommandRejected("bad_release", str(exc)[:160]) from None
    release_version(m.version)  # it names a directory and pip installs it by it
    out = []
    for key, default, (lo, hi) in (("commit_deadline_s", DEFAULT_DEADLINE_S, DEADLINE_RANGE_S), ("rate_bps", DEFAULT_RATE_BPS, RATE_RANGE_BPS)):
        value = extra.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise CommandRejected("bad_release", f"{key} must be a number in {lo:g}..{hi:g}")
        out.append(float(value))
    return m, out[0], out[1]


class UpdateApi:
    def __init__(self, d: Daemon, fleet: FleetApi) -> None:
        self.d = d
        self.fleet = fleet  # its uplink/port snapshot is what the commit is compared against
        self._task: asyncio.Task[None] | None = None

    async def update_status(self, args: dict[str, Any]) -> dict[str, Any]:
        return status_fields()

    async def update(self, args: dict[str, Any]) -> dict[str, Any]:
        m, deadline_s, rate_bps = parse_update(args)
        sw = release_root()
        if sw is None:
            raise CommandRejected("unsupported", "not an installed release (no /opt/courtyard-gateway/venv link)")
        key_path = os.environ.get("CG_RELEASE_PUB", "/etc/courtyard-gateway/release.pub")
        try:
            key = load_release_key(Path(key_path))
        except (OSError, ValueError) as exc:
            raise CommandRejected("no_release_key", f"{key_path}: {exc}"[:200]) from None
        verify_manifest(m, key)
        check_release(m, sw)  # refused before a download; the root updater checks again on its own record
        files = RUNTIME.files
        # A request the root updater has taken (gone from our directory) is being installed: wait for it.
        # One still lying there may be replaced (e.g. the root units are missing and the operator retries).
        in_root = status_fields()["phase"] == "installing" and not (release_dir(self.d.cfg.store.path) / REQUEST).exists()
        if (self._task is not None and not self._task.done()) or sw.pending() is not None or RUNTIME.restart_requested.is_set() \
                or in_root or (files is not None and files.pending() is not None):
            raise CommandRejected("update_pending", "an update or config apply is in progress; wait for its commit or rollback")
        if sw.current() == f"venvs/{release_name(m.version, m.sha256)}":
            return {"result": "unchanged", "version": m.version, "release": sw.current().removeprefix("venvs/")}
        dl = release_dir(self.d.cfg.store.path)
        dl.mkdir(mode=0o750, exist_ok=True)
        dest = bundle_path(dl, m)  # the root updater computes the same name; it never takes a path from us
        PROGRESS.__init__("downloading", m.version, m.size, str(dest.with_name(dest.name + ".partial")), "", os.urandom(8).hex())  # type: ignore[misc]
        self._task = asyncio.create_task(self._run(m, dest, deadline_s, rate_bps))
        self.d.log.warning("update_started", version=m.version, size=m.size, deadline_s=deadline_s)
        return {"result": "downloading", "version": m.version, "of": m.size, "commit_deadline_s": deadline_s}

    async def _run(self, m: ReleaseManifest, dest: Path, deadline_s: float, rate_bps: float) -> None:
        try:
            await asyncio.to_thread(download, m, dest, rate_bps)
            if RUNTIME.files is not None and RUNTIME.files.pending() is not None:
                raise CommandRejected("update_pending", "a config apply started meanwhile")
            req = UpdateRequest(PROGRESS.request_id, m, deadline_s, uplink_was_up=self.fleet._uplink_up(),
                                ports_closed_before=sorted(self.fleet._ports_closed()))
            # Written last and atomically: courtyard-gateway-update.path starts the root updater on it.
            await asyncio.to_thread(write_atomic, dest.parent / REQUEST, msgspec.json.encode(req))
        except (GatewayError, OSError) as exc:
            PROGRESS.phase, PROGRESS.error = "failed", str(exc)[:300]
            self.d.log.error("update_failed", version=m.version, error=PROGRESS.error)
            return
        PROGRESS.phase = "installing"
        self.d.log.warning("update_requested", version=m.version, request=PROGRESS.request_id)


def release_dir(store_path: str) -> Path:
    """The daemon's download and request directory, beside the outbox (/var/lib/courtyard-gateway/release)."""
    return Path(store_path).resolve().parent / "release"


def selftest_subset(status: dict[str, Any], cfg: Any, config_path: str) -> list[str]:
    """`gateway selftest`'s daemon and disk checks on the new release: failures, [] = passed. The
    rest of the selftest (ports, rules, uplink) is unhealthy()'s; the clock and device checks are
    about the courtyard, not the release, and must not roll a good release back."""
    from gateway.cli import checks

    env = checks.Env(config_path=config_path, cfg=cfg, status=status)
    return [f"selftest {c.name}: {c.reason}"[:120] for c in (*checks.check_daemon(env), *checks.check_disk(env)) if not c.ok]


def watch_release(config_path: str, socket: str, stopping: threading.Event) -> threading.Thread | None:
    """In the new release: report its health to the root updater (health.json) until it resolves the
    switch; the updater commits or switches back (gateway/fleet/updater.py)."""
    sw = release_root()
    p = sw.pending() if sw is not None else None
    if sw is None or p is None or sw.current() != p.new:
        return None
    t = threading.Thread(target=_watch, args=(sw, p, config_path, socket, stopping), name="release-health", daemon=True)
    t.start()
    return t


def _watch(sw: ReleaseSwitch, p: ReleasePending, config_path: str, socket: str, stopping: threading.Event) -> None:
    from gateway.config import load_config

    cfg = load_config(config_path)
    health = release_dir(cfg.store.path) / HEALTH
    why = ["daemon never answered on its control socket"]
    said: tuple[float, list[str]] | None = None
    log = logsetup.get_lazy(component="fleet")  # this thread starts before the daemon configures logging
    while not stopping.is_set():
        cur = sw.pending()
        if cur is None or cur.new != p.new:
            st = sw.state()
            if st.get("committed_version") == p.version and not st.get("last_update_error"):
                log.info("release_committed", version=p.version, release=p.new)
            return  # resolved by the root updater (or at a start)
        try:
            reply = call(socket, "status", timeout_s=2.0)
            if reply.ok and isinstance(reply.result, dict):
                why = unhealthy(reply.result, cur.uplink_was_up, frozenset(cur.ports_closed_before))
                why += selftest_subset(reply.result, cfg, config_path)
        except DaemonUnavailable as exc:
            why = [f"control socket: {exc}"[:120]]
        if said != (cur.switched_s, why):  # written on change only: an SD card, every 0.5 s for minutes
            try:
                write_atomic(health, msgspec.json.encode({"release": cur.new, "switched_s": cur.switched_s,
                                                          "healthy": not why, "why": why, "wall_s": time.time()}))
                said = (cur.switched_s, why)
                if not why:
                    log.info("release_healthy", version=cur.version, release=cur.new, starts=cur.starts)
            except OSError as exc:
                log.error("release_health_unwritable", error=str(exc)[:200])
        stopping.wait(POLL_S)
