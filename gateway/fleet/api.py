"""The platform's fleet commands on the daemon: `config_apply` (validate in a staging file, swap
atomically, restart to commit or roll back) and `config_status`. Contract: docs/fleet.md."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.errors import CommandRejected, ConfigError
from gateway.fleet.atomic import fsync_dir, write_atomic
from gateway.fleet.bundle import Bundle, candidate, parse_bundle
from gateway.fleet.commit import ConfigCommit, port_open
from gateway.fleet.files import ConfigFiles, Pending, now_wall
from gateway.fleet.runner import RUNTIME, FleetRuntime

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.daemon import Daemon

RESTART_DELAY_S = 1.0  # lets the uplink publish the reply before the daemon stops
# Sections the running stages take without stopping (Daemon.reload); any other change restarts the
# daemon, which is the one reload path that can never leave stages on different configs.
RELOADABLE = frozenset({"contacts"})


class FleetApi:
    def __init__(self, d: Daemon, runtime: FleetRuntime = RUNTIME) -> None:
        self.d = d
        self.runtime = runtime  # the process's; a test stand-in passes its own (tests/reliability/fleet_standin.py)
        self._busy = asyncio.Lock()

    def _files(self) -> ConfigFiles:
        if self.runtime.files is None:
            raise CommandRejected("unsupported", "this daemon was not started by `gateway run --config`")
        return self.runtime.files

    async def config_status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._files().status_fields()

    async def config_apply(self, args: dict[str, Any]) -> dict[str, Any]:
        files = self._files()
        if self._busy.locked() or files.pending() is not None or self.runtime.restart_requested.is_set():
            raise CommandRejected("apply_pending", "an apply is in progress; wait for its commit or rollback")
        from gateway.fleet.update import release_root

        sw = release_root()
        if sw is not None and sw.pending() is not None:
            raise CommandRejected("apply_pending", "a software update is pending; wait for its commit or rollback")
        async with self._busy:
            b = parse_bundle(args)
            current = files.config.read_bytes().decode()
            try:
                new_text, sections = candidate(current, b)
            except (TypeError, ValueError) as exc:
                raise CommandRejected("invalid_config", f"patch cannot be written as TOML: {exc}"[:200]) from None
            if not sections:
                # Same content as the running config: nothing restarts; the version label is adopted.
                st = files.update_state(config_version=b.version, last_apply_version=b.version, last_apply_error="")
                return {"result": "unchanged", "version": b.version, "config_hash": files.config_hash(), "state": st.config_version}
            if not self.runtime.hold_lock():
                raise CommandRejected("apply_pending", "another process holds the config lock")
            cfg = await asyncio.to_thread(self._stage, files, b, new_text)
            pending = Pending(b.version, _sha(new_text), files.config_hash(), b.commit_deadline_s,
                              uplink_was_up=self._uplink_up(), applied_wall_s=now_wall(),
                              ports_closed_before=self._ports_closed())
            await asyncio.to_thread(self._swap, files, pending, current)
            if sections <= RELOADABLE:
                return self._reload_in_place(files, pending, cfg, sections)
        asyncio.get_running_loop().call_later(RESTART_DELAY_S, self.runtime.request_restart)
        self.d.log.warning("config_apply_restarting", version=b.version, config_hash=pending.config_hash[:16],
                           deadline_s=b.commit_deadline_s)
        return {"result": "restarting", "version": b.version, "config_hash": pending.config_hash,
                "commit_deadline_s": b.commit_deadline_s}

    def _ports_closed(self) -> list[str]:
        return [name for name, drv in self.d.drivers.items() if not port_open(msgspec.to_builtins(drv.health()))]

    def _uplink_up(self) -> bool:
        up = self.d.uplink.health() if self.d.uplink is not None else {}
        return bool(up.get("up"))

    def _reload_in_place(self, files: ConfigFiles, pending: Pending, cfg: Config, sections: frozenset[str]) -> dict[str, Any]:
        """Only sections the running stages take in place changed (a relative's new number): no stage
        stops. The swap above wrote the marker first, so a crash before the commit below is decided at
        the next start exactly like a restarting apply (watched, committed or rolled back)."""
        t0 = time.perf_counter()
        self.d.reload(cfg, sections)
        reload_ms = (time.perf_counter() - t0) * 1000
        ConfigCommit(files, self.d.log, self.runtime.request_restart).commit(pending)
        self.d.log.info("config_apply_reloaded", version=pending.version, sections=sorted(sections), reload_ms=round(reload_ms, 3))
        return {"result": "applied", "version": pending.version, "config_hash": pending.config_hash,
                "reloaded": sorted(sections), "reload_ms": round(reload_ms, 3)}

    def _stage(self, files: ConfigFiles, b: Bundle, new_text: str) -> Config:
        """Write the candidate beside the config (relative paths resolve the same) and validate it
        exactly as `gateway config check` does; nothing else is touched if it fails."""
        from gateway.config import load_config

        write_atomic(files.staging, new_text.encode(), mode=0o640)
        try:
            cfg = load_config(files.staging)
        except ConfigError as exc:
            files.staging.unlink(missing_ok=True)
            problems = "; ".join(exc.problems)
            files.update_state(last_apply_version=b.version, last_apply_error=f"invalid: {problems}"[:400])
            raise CommandRejected("invalid_config", problems[:400]) from None
        if cfg.identity.gateway_id != self.d.cfg.identity.gateway_id:
            files.staging.unlink(missing_ok=True)
            raise CommandRejected("invalid_config", "gateway_id differs from the running config")
        return cfg

    @staticmethod
    def _swap(files: ConfigFiles, pending: Pending, current: str) -> None:
        """Order matters for "old or new, never a mix" (docs/fleet.md "Crash safety"): last-good, then
        the marker, then one rename of the staged file over the config."""
        write_atomic(files.last_good, current.encode(), mode=0o640)
        files.write_pending(pending)
        os.replace(files.staging, files.config)
        fsync_dir(files.config.parent)


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
