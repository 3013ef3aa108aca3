"""A real gateway daemon for CLI tests: a tmp config, the Modbus product simulator on a pty (in its
own thread and loop, so tests can look at coils), and `gateway run` as a subprocess."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from drivers.modbus.simbank import SlaveSim, load_profile
from drivers.modbus.simulator import ModbusSimulator
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "config" / "profiles"
# unit id -> (device id, profile): two hydrant monitors and the guard-room relay box on one RS-485 bus.
BUS = {1: ("hydrant-1", "hydrant_monitor"), 2: ("hydrant-2", "hydrant_monitor"), 10: ("guard-relay", "guard_relay_box")}


class SimThread:
    """ModbusSimulator serving `units` on a pty symlinked at `path`, on a private loop thread."""

    def __init__(self, path: str, units: dict[int, tuple[str, str]] = BUS) -> None:
        slaves = []
        for unit, (_dev, profile) in units.items():
            kind, prof = load_profile(PROFILES / f"{profile}.toml")
            slaves.append(SlaveSim(unit, kind, prof))
        self.sim = ModbusSimulator(slaves)
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> "SimThread":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start_rtu(self.path, create_pty=True), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def write_config(directory: Path, bus_path: str, units: dict[int, tuple[str, str]] = BUS, extra: str = "",
                 uplink: str = 'broker_url = "mqtt://127.0.0.1:1883"', clock: str = "assume_synced") -> Path:
    """gateway.toml + profiles/ in `directory`; store and control socket inside it too."""
    (directory / "profiles").mkdir(parents=True, exist_ok=True)
    for _dev, profile in units.values():
        shutil.copy(PROFILES / f"{profile}.toml", directory / "profiles" / f"{profile}.toml")
    devices = "".join(
        f'[[devices]]\nid = "{dev}"\nprofile = "{profile}"\nport = "rs485"\naddress = {unit}\nbuilding = "{unit}"\n\n'
        for unit, (dev, profile) in units.items()
    )
    text = f"""
[identity]
gateway_id = "gw-test-01"

[clock]
sync = "{clock}"

[log]
level = "info"
format = "json"

[uplink]
{uplink}

[store]
path = "{directory}/state/outbox.db"

[control]
socket = "{directory}/run/control.sock"

[ports.rs485]
driver = "modbus_rtu"
path = "{bus_path}"
baud = 9600
timeout_s = 0.3
poll_period_s = 0.5
offline_after = 2

{devices}
{extra}
"""
    path = directory / "gateway.toml"
    path.write_text(text)
    return path


class DaemonProc:
    """`gateway run --config FILE` as a child process; ready once the socket answers `status`."""

    def __init__(self, config: Path, socket_path: Path) -> None:
        self.config, self.socket = config, socket_path
        self.log_path = config.parent / "daemon.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "DaemonProc":
        from gateway.control.client import DaemonUnavailable, call

        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(self.config)],
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                return call(str(self.socket), "status", timeout_s=2).ok
            except DaemonUnavailable:
                return False

        wait_for(answers, timeout_s=30, what="daemon control socket")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.log.close()


def cli_env(config: Path) -> dict[str, str]:
    return {**os.environ, "COURTYARD_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
