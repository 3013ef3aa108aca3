"""`gateway run` with config commit/rollback around the daemon: decides a pending apply before the
config is loaded, watches the new config's health, and turns a requested restart into RESTART_EXIT
for systemd (Restart=always) or the test harness to start the daemon again (docs/fleet.md)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

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

    def request_restart(self) -> None:
        """Stop the daemon the ordinary way (its SIGTERM handler: drivers, rules, store closed in order)
        and exit with RESTART_EXIT."""
        self.restart_requested.set()
        os.kill(os.getpid(), signal.SIGTERM)


RUNTIME = FleetRuntime()


def run(config_path: str, state_dir: str | None = None, runtime_dir: str | None = None) -> int:
    from gateway import daemon
    from gateway.config import load_config

    files = ConfigFiles(config_path)
    RUNTIME.files = files
    log = logsetup.get(component="fleet")
    commit = ConfigCommit(files, log, RUNTIME.request_restart)
    pending = commit.at_start()
    if pending is not None:
        try:
            cfg = load_config(config_path)
        except ConfigError as exc:  # validated before the swap; a missing credentials file etc. still can
            commit.rollback(pending, f"invalid at start: {'; '.join(exc.problems)[:300]}")
        else:
            sock = cfg.control.socket if not runtime_dir else os.path.join(runtime_dir, Path(cfg.control.socket).name)
            commit.watch(pending, sock)
    try:
        code = daemon.run(config_path, state_dir, runtime_dir)
    finally:
        commit.stopping.set()
    return RESTART_EXIT if RUNTIME.restart_requested.is_set() else code
