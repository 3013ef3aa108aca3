"""Lightweight gateway stand-ins for the fleet wave test (issue 20, docs/fleet.md "Wave test").

A real `gateway run` costs ~1.5 s CPU to start; twenty of them, restarted by their applies, would not
fit a 2-core CI. Each stand-in runs, in the test's event loop, the real parts a roll-out exercises:
- a real Uplink on its own Outbox: MQTT v5 session to mosquitto, HMAC/window/nonce verification, the one
  command worker, one reply per command;
- the real FleetApi on its own config files: bundle checks, staging validation with load_config
  (`gateway config check`), the atomic swap, the restart request;
- a "restart" that stops the uplink like a process exit (lock released) and starts again through the
  real start-time decision (gateway.fleet.runner._decide -> ConfigCommit) whose health watch asks the
  stand-in's real control socket for `status` until commit or rollback.
Not real: drivers, rules and store stages. The status the watch reads is the stand-in's: rules
running, port `radio` open (down after a restart when `radio_lost_on_restart`: a HAT that does not come
back), and the real uplink's health.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from drivers.base import DriverHealth, DriverState
from gateway import log as logsetup
from gateway.clock import Clock
from gateway.config import load_config, load_credentials
from gateway.control.server import ControlServer
from gateway.fleet.api import FleetApi
from gateway.fleet.commit import ConfigCommit
from gateway.fleet.files import ConfigFiles
from gateway.fleet.runner import FleetRuntime, _decide
from gateway.uplink.client import Uplink
from tests.integration.uplink_support import open_outbox

REPO = Path(__file__).resolve().parents[2]


def config_text(gateway_id: str, broker_url: str, creds: Path, store: Path, contacts: list[tuple[str, str, str]],
                device_contacts: list[str]) -> str:
    """A small valid courtyard config: contacts, one LoRa port, one device naming its contacts."""
    out = [f'profiles_dir = "{REPO / "config" / "profiles"}"', "", "[identity]", f'gateway_id = "{gateway_id}"', "",
           "[uplink]", f'broker_url = "{broker_url}"', f'credentials_file = "{creds}"', "", "[store]", f'path = "{store}"', ""]
    for cid, role, phone in contacts:
        out += ["[[contacts]]", f'id = "{cid}"', f'name = "{cid}"', f'role = "{role}"', f'phone = "{phone}"', ""]
    out += ["[ports.radio]", 'driver = "lora_e22"', 'path = "/dev/ttyAMA1"', "", "[[devices]]", 'id = "flow-riser-1"',
            'profile = "lora_water_flow_v1"', 'port = "radio"', "address = 0xF10E",
            "contacts = [" + ", ".join(f'"{c}"' for c in device_contacts) + "]", ""]
    return "\n".join(out)


class _Radio:
    """The one port a stand-in reports, as a driver's health (what FleetApi and the commit watch read)."""

    def __init__(self) -> None:
        self.open = True

    def health(self) -> DriverHealth:
        if self.open:
            return DriverHealth(DriverState.OK, detail={"port_open": True})
        return DriverHealth(DriverState.DOWN, detail={"port_open": False, "port_error": "[Errno 2] /dev/ttyAMA1 vanished"})


class _Runtime(FleetRuntime):
    """The stand-in's process: a restart request restarts the stand-in instead of SIGTERM to pytest."""

    def __init__(self, owner: StandIn) -> None:
        super().__init__()
        self.owner = owner
        self.loop = asyncio.get_running_loop()

    def request_restart(self) -> None:  # from the loop (after config_apply) or the watch thread (rollback)
        self.restart_requested.set()
        self.loop.call_soon_threadsafe(self.owner.schedule_restart)

    def exit(self) -> None:
        if self._lock_fd is not None:  # the kernel releases a dead process's flock; so do we
            os.close(self._lock_fd)
            self._lock_fd = None


class StandIn:
    def __init__(self, root: Path, runtime_root: Path, gateway_id: str, broker_url: str, command_keys: dict[str, str],
                 contacts: list[tuple[str, str, str]], device_contacts: list[str], radio_lost_on_restart: bool = False) -> None:
        self.id = gateway_id
        self.dir = root / gateway_id
        self.dir.mkdir(parents=True)
        self.runtime_dir = runtime_root / gateway_id[-2:]  # short: unix socket paths are limited to 107 bytes
        self.runtime_dir.mkdir(parents=True)
        creds = self.dir / "credentials.toml"
        creds.write_text("[command_keys]\n" + "".join(f'{k} = "{v}"\n' for k, v in command_keys.items()))
        creds.chmod(0o600)
        self.config = self.dir / "gateway.toml"
        self.config.write_text(config_text(gateway_id, broker_url, creds, self.dir / "state" / "outbox.db", contacts, device_contacts))
        self.original = self.config.read_bytes()
        self.files = ConfigFiles(self.config)
        self.clock = Clock("assume_synced")
        self.log = logsetup.get(gateway=gateway_id)
        self.radio_lost_on_restart = radio_lost_on_restart
        self.drivers = {"radio": _Radio()}
        self.starts = 0
        self.received = 0  # commands delivered to this stand-in over all its starts
        self.uplink: Uplink | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._restart: asyncio.Task[None] | None = None
        self._runtime: _Runtime | None = None
        self._commit: ConfigCommit | None = None
        self._outbox: Any = None

    # -- what FleetApi reads of the daemon: cfg, uplink, drivers, log --------------------------------
    def status(self) -> dict[str, Any]:
        import msgspec

        return {"active_alarms": 0, "tasks": {"rules": {"running": True}},
                "drivers": {n: msgspec.to_builtins(d.health()) for n, d in self.drivers.items()},
                "uplink": self.uplink.health() if self.uplink is not None else {}}

    def reload(self, cfg: Any, sections: frozenset[str]) -> None:
        """Daemon.reload for the sections FleetApi applies in place (contacts): the stand-in has no stage to tell."""
        self.cfg = cfg

    async def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.status()

    # -- process life ------------------------------------------------------------------------------
    async def start(self) -> None:
        """What `gateway run` does before and around the daemon (gateway.fleet.runner.run)."""
        self._runtime = rt = _Runtime(self)
        rt.files = self.files
        self._commit = ConfigCommit(self.files, self.log, rt.request_restart)
        if not self.files.pending_path.exists() or rt.hold_lock():
            _decide(self._commit, str(self.config), str(self.runtime_dir))  # commit/rollback; watch thread
        self.cfg = load_config(self.config)
        self.starts += 1
        self.drivers["radio"].open = not (self.radio_lost_on_restart and self.starts > 1)
        self._outbox = await open_outbox(self.dir, self.clock)
        api = FleetApi(self, rt)  # type: ignore[arg-type] - the stand-in offers what FleetApi reads of a Daemon
        self.uplink = Uplink(self.cfg.uplink, load_credentials(self.cfg.uplink.credentials_file), self.cfg.identity,
                             self._outbox, self.clock, self.log,
                             handlers={"config_apply": api.config_apply, "config_status": api.config_status})
        server = ControlServer(str(self.runtime_dir / "control.sock"), {"status": self._status}, set(), self.log)
        self._tasks = [asyncio.create_task(server.run()), asyncio.create_task(self.uplink.run())]

    async def stop(self) -> None:
        if self._commit is not None:
            self._commit.stopping.set()
        if self.uplink is not None:
            self.received += self.uplink.inbox.received
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # the uplink goes offline cleanly
        self._tasks, self.uplink = [], None
        if self._outbox is not None:
            await self._outbox.close()
        if self._runtime is not None:
            self._runtime.exit()

    def schedule_restart(self) -> None:
        if self._restart is None or self._restart.done():
            self._restart = asyncio.create_task(self._restart_now())

    async def _restart_now(self) -> None:
        await self.stop()
        await self.start()

    def commands_received(self) -> int:
        return self.received + (self.uplink.inbox.received if self.uplink is not None else 0)

    def connected(self) -> bool:
        return self.uplink is not None and bool(self.uplink.health().get("up"))

    async def close(self) -> None:
        if self._restart is not None:
            await asyncio.gather(self._restart, return_exceptions=True)
        await self.stop()
