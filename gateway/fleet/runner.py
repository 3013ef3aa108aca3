"""`gateway run` with config commit/rollback around the daemon: decides a pending apply before the
config is loaded, watches the new config's health, and turns a requested restart into RESTART_EXIT
for systemd (Restart=always) or the test harness to start the daemon again (docs/fleet.md)."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from pathlib import Path
from typing import Any

from gateway import log as logsetup
from gateway.errors import ConfigError
from gateway.fleet import RESTART_EXIT
from gateway.fleet.commit import ConfigCommit
from gateway.fleet.files import ConfigFiles


class FleetRuntime:
    """Process-wide: which config file this daemon runs on and whether it should restart on exit."""

    def __init__(self) -> None:
        self.files: ConfigFiles | None = None
        self.restart_requested = threading.Event()
        self._lock_fd: int | None = None

    def hold_lock(self) -> bool:
        """flock <config>.lock for the life of the process (the kernel releases it at exit), so that a
        second `gateway run` on the same config never counts a start nor rolls back under the running
        one. Taken only around an apply (marker present), so a config directory nobody applies to
        gets no lock file. Idempotent."""
        if self._lock_fd is not None:
            return True
        assert self.files is not None
        try:
            fd = os.open(self.files.lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError:
            return True  # read-only directory: nothing can be written to decide anyway; the writes will say so
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def request_restart(self) -> None:
        """Stop the daemon the ordinary way (its SIGTERM handler: drivers, rules, store closed in order)
        and exit with RESTART_EXIT."""
        self.restart_requested.set()
        os.kill(os.getpid(), signal.SIGTERM)


RUNTIME = FleetRuntime()


def run(config_path: str, state_dir: str | None = None, runtime_dir: str | None = None) -> int:
    from gateway import daemon

    files = ConfigFiles(config_path)
    RUNTIME.files = files
    # Lazy: bound at each use, so the decisions logged after daemon.run has set up logging (the commit,
    # a rollback from the watch thread) come out in the configured format, not structlog's default.
    log = logsetup.get_lazy(component="fleet")
    commit = ConfigCommit(files, log, RUNTIME.request_restart)
    try:
        if not files.pending_path.exists() or RUNTIME.hold_lock():
            _decide(commit, config_path, runtime_dir)
        else:  # a daemon already runs on this config: this one will be refused; decide nothing
            log.warning("config_commit_skipped", reason="another daemon holds the config lock")
    except OSError as exc:
        # Never a precondition of the alarm path: an unreadable marker or a read-only card costs the
        # commit decision (retried at the next start), not the daemon.
        log.error("config_commit_unavailable", error=str(exc)[:200])
    _watch_release(config_path, runtime_dir, commit.stopping, log)
    try:
        code = daemon.run(config_path, state_dir, runtime_dir)
    finally:
        commit.stopping.set()
    return RESTART_EXIT if RUNTIME.restart_requested.is_set() else code


def _decide(commit: ConfigCommit, config_path: str, runtime_dir: str | None) -> None:
    from gateway.config import load_config

    pending = commit.at_start()
    if pending is None:
        return
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:  # validated before the swap; a missing credentials file etc. still can
        commit.rollback(pending, f"invalid at start: {'; '.join(exc.problems)[:300]}")
        return
    commit.watch(pending, _socket(cfg, runtime_dir))


def _socket(cfg: Any, runtime_dir: str | None) -> str:
    return cfg.control.socket if not runtime_dir else os.path.join(runtime_dir, Path(cfg.control.socket).name)


def _watch_release(config_path: str, runtime_dir: str | None, stopping: threading.Event, log: Any) -> None:
    """A software update pending (this release was just switched to): report its health to the root
    updater, which commits or switches back (gateway/fleet/update.py). Never stops the daemon from
    starting: without a readable config or marker the root updater's deadline decides."""
    from gateway.config import load_config
    from gateway.fleet.update import release_root, watch_release

    try:
        sw = release_root()
        if sw is None or sw.pending() is None:
            return  # the usual start: no config load, no thread
        watch_release(config_path, _socket(load_config(config_path), runtime_dir), stopping)
    except (ConfigError, OSError) as exc:
        log.error("release_commit_unavailable", error=str(exc)[:200])
