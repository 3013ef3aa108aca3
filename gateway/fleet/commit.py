"""ConfigCommit: at each daemon start, decide what a pending config apply becomes (issue 20).

Pending and healthy within its deadline (uplink up again if it was up before the apply, every port
opened, rules loaded) -> committed. Not healthy by the deadline, invalid at start, or started more than
MAX_STARTS times without committing (a crash loop) -> the last good config is restored, the reason is
recorded for the retained status, and the daemon restarts on it. The health check asks the running
daemon over its own control socket, so it needs no hook inside the alarm path.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from gateway.control.client import DaemonUnavailable, call
from gateway.fleet.files import ConfigFiles, Pending, now_wall

MAX_STARTS = 3  # a config that cannot stay up three starts in a row is not going to
POLL_S = 0.5
PORT_UP = ("ok", "degraded")  # degraded = port open, some device quiet: the port itself is up


def port_open(health: dict[str, Any]) -> bool:
    """Opened: running (ok/degraded), or starting on a device it holds open (a quiet LoRa channel
    stays "starting" until its first frame; that is not a reason to roll back)."""
    state = health.get("state")
    return state in PORT_UP or (state == "starting" and health.get("detail", {}).get("port_open") is True)


def unhealthy(status: dict[str, Any], uplink_required: bool, excused: frozenset[str] = frozenset()) -> list[str]:
    """What keeps a just-applied config from being committed ([] = healthy). `excused`: ports that
    were not open before the apply either (a config change is not blamed for an unplugged port)."""
    why = []
    tasks = status.get("tasks", {})
    if "active_alarms" not in status or not tasks.get("rules", {}).get("running"):
        why.append("rules not loaded")
    for name, health in status.get("drivers", {}).items():
        if not port_open(health) and name not in excused:
            why.append(f"port {name} {health.get('state')}: {str(health.get('detail') or '')[:80]}".rstrip(": "))
    up = status.get("uplink", {})
    if uplink_required and not up.get("up"):
        why.append(f"uplink not acknowledged ({up.get('reason') or up.get('state') or 'off'})")
    return why


class ConfigCommit:
    def __init__(self, files: ConfigFiles, log: Any, on_restart: Any) -> None:
        self.files = files
        self.log = log
        self.on_restart = on_restart  # called after a rollback decided while the daemon runs
        self.stopping = threading.Event()
        self.outcome = ""  # "committed" | "rolled_back" | "" (still pending / nothing pending)

    def at_start(self) -> Pending | None:
        """Before the config is loaded: returns the apply to watch, or None (nothing pending, or
        resolved here: interrupted before its swap, or a crash loop rolled back)."""
        p = self.files.pending()
        if p is None:
            return None
        running = self.files.config_hash()
        if running != p.config_hash:
            # Killed between the marker and the rename: the old config never left. Nothing to undo.
            self.files.clear_pending()
            reason = "interrupted before the swap; old config kept" if running == p.previous_hash else "config changed by hand during the apply"
            self.files.update_state(last_apply_version=p.version, last_apply_error=reason)
            self.log.warning("config_apply_abandoned", version=p.version, reason=reason)
            return None
        if p.starts >= MAX_STARTS:
            self.rollback(p, f"crash loop: {p.starts} starts without becoming healthy")
            return None
        p.starts += 1
        self.files.write_pending(p)
        return p

    def rollback(self, p: Pending, reason: str) -> None:
        self.files.restore_last_good()
        self.files.clear_pending()
        self.files.update_state(last_apply_version=p.version, last_apply_error=reason)
        self.outcome = "rolled_back"
        self.log.error("config_rolled_back", version=p.version, reason=reason)

    def commit(self, p: Pending) -> None:
        self.files.update_state(config_version=p.version, config_hash=p.config_hash, committed_wall_s=now_wall(),
                                last_apply_version=p.version, last_apply_error="")
        self.files.clear_pending()
        self.outcome = "committed"
        self.log.info("config_committed", version=p.version, config_hash=p.config_hash[:16])

    def watch(self, p: Pending, socket: str) -> threading.Thread:
        """Health-check the running daemon until it commits or the deadline passes (own thread)."""
        t = threading.Thread(target=self._watch, args=(p, socket), name="config-commit", daemon=True)
        t.start()
        return t

    def _watch(self, p: Pending, socket: str) -> None:
        deadline = time.monotonic() + p.deadline_s
        why = ["daemon never answered on its control socket"]
        while not self.stopping.is_set():
            try:
                reply = call(socket, "status", timeout_s=2.0)
                if reply.ok and isinstance(reply.result, dict):
                    why = unhealthy(reply.result, p.uplink_was_up, frozenset(p.ports_closed_before))
            except DaemonUnavailable as exc:
                why = [f"control socket: {exc}"[:120]]
            if not why:
                self.commit(p)
                return
            if time.monotonic() >= deadline:
                break
            self.stopping.wait(POLL_S)
        if self.stopping.is_set():
            return  # the daemon is stopping for another reason: the next start decides (starts counts it)
        self.rollback(p, f"not healthy within {p.deadline_s:g} s: {'; '.join(why)}"[:400])
        self.on_restart()
