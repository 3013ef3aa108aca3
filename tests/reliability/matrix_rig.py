"""The fault matrix's rig (issue 15): the simulated demo courtyard (real ptys, real simulators), a real
mosquitto behind the courtyard's fault proxy, a platform subscriber, and the real daemon as a subprocess
on a config each row may bend. One smoke alarm per row proves the alarm core: sounder on the relay box,
SMS at the simulated modem; the relay box's trouble coil proves the fault signalling.

Deadlines are shortened for the tests (trouble checks every 1 s, uplink fault after 5 s, bus fault
after 3 s); docs/RELIABILITY.md gives the figures with the shipped defaults.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tomli_w import dumps

from gateway.control.client import DaemonUnavailable, call
from gateway.simulate.courtyard import Courtyard, load
from gateway.simulate.platform import PlatformView
from tests.support.wait import async_wait_for

ROOT = Path(__file__).resolve().parents[2]
RELAY_UNIT = 10  # guard-relay in config/demo/courtyard.toml
TROUBLE = {"check_period_s": 1.0, "uplink_after_s": 5.0, "centre_after_s": 5.0, "bus_after_s": 3.0}
SOUNDER_BUDGET_S = 2.0  # the 1 s, with room for a loaded 2-core CI machine (figures in RELIABILITY.md)


def courtyard_file(tmp_path: Path) -> Path:
    """The demo courtyard without its timed scenario (each row triggers what it needs)."""
    text = (ROOT / "config/demo/courtyard.toml").read_text().split("# ---- The demo's scenario")[0]
    text = text.replace('profiles_dir = "../profiles"', f'profiles_dir = "{ROOT / "config/profiles"}"')
    p = tmp_path / "courtyard.toml"
    p.write_text(text)
    return p


class Rig:
    def __init__(self, tmp_path: Path, broker: Any) -> None:
        self.tmp = tmp_path
        self.broker = broker
        spec = courtyard_file(tmp_path)
        self.config = tmp_path / "gateway.toml"
        self.cy = Courtyard(load(spec), spec, self.config, broker.url, time_scale=1.0)
        self.view = PlatformView(broker.url, "gw-xinhong-03", out=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the rig
        self.daemons: list[subprocess.Popen[bytes]] = []
        self.refused: list[subprocess.Popen[bytes]] = []  # started to be refused (a second daemon)
        self.log = tmp_path / "daemon.log"
        self._smoke_used: set[str] = set()
        self.figures: dict[str, float] = {}  # printed per row (-s): docs/RELIABILITY.md "Fault matrix"
        self._fault_t0: float | None = None

    async def start(self, bend: Callable[[dict[str, Any]], None] | None = None) -> None:
        await self.cy.start()
        doc = tomllib.loads(self.config.read_text())
        notify = doc.setdefault("notify", {})
        notify.setdefault("trouble", {}).update(TROUBLE)
        notify.setdefault("sms", {}).update(min_interval_s=0.0, max_per_hour=1000, retry_s=1.0)
        notify.setdefault("sounder", {}).update(retry_s=1.0)
        if bend is not None:
            bend(doc)
        self.config.write_text(dumps(doc))
        self.view.start()

    @property
    def socket(self) -> str:
        return tomllib.loads(self.config.read_text())["control"]["socket"]

    def spawn(self, nofile: int | None = None, refused: bool = False) -> subprocess.Popen[bytes]:
        def limits() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

        log = self.log.open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(self.config)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=limits)
        log.close()
        (self.refused if refused else self.daemons).append(proc)
        return proc

    async def run_daemon(self, nofile: int | None = None) -> subprocess.Popen[bytes]:
        proc = self.spawn(nofile)

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited {proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                return call(self.socket, "status", timeout_s=2).ok
            except DaemonUnavailable:
                return False

        await async_wait_for(ready, 30, what="daemon control socket")
        return proc

    def status(self) -> dict[str, Any]:
        reply = call(self.socket, "status", timeout_s=5)
        assert reply.ok, reply
        return reply.result

    def coil(self, name: str) -> bool:
        return bool(self.cy.sims["modbus_rtu"].output(RELAY_UNIT, name))

    def sms_texts(self) -> list[str]:
        return [text for _, text in self.cy.sims["sms"].texts()]

    def smoke_device(self) -> Any:
        dev = next(d for d in self.cy.spec.lora.devices if d.profile == "lora_smoke_v1" and d.id not in self._smoke_used)
        self._smoke_used.add(dev.id)
        return dev

    async def smoke(self, expect_sms: bool = True, dev: Any = None) -> float:
        """Smoke in a flat: returns trigger -> sounder coil on (s); waits for its SMS too."""
        dev = dev or self.smoke_device()
        place = f"{dev.building}栋{dev.unit}单元{dev.room}"
        t0 = time.monotonic()
        await self.cy.trigger("smoke", dev.id)
        await async_wait_for(lambda: self.coil("sounder"), 10, interval_s=0.005, what="sounder on")
        latency = time.monotonic() - t0
        self.figures.setdefault("sounder_s", round(latency, 3))
        if expect_sms:
            await self.sms_for(place)
            self.figures.setdefault("sms_s", round(time.monotonic() - t0, 3))
        return latency

    async def sms_for(self, place: str, timeout_s: float = 20) -> None:
        await async_wait_for(lambda: any(place in t for t in self.sms_texts()), timeout_s, what=f"SMS for {place}")

    def fault_starts(self) -> None:
        """Mark the instant the row injects its fault: time to trouble counts from here."""
        self._fault_t0 = time.monotonic()

    async def trouble_within(self, deadline_s: float, on: bool = True) -> float:
        t0 = self._fault_t0 if (on and self._fault_t0 is not None) else time.monotonic()
        try:
            await async_wait_for(lambda: self.coil("trouble") is on, deadline_s, interval_s=0.05,
                                 what=f"trouble coil {'on' if on else 'off'}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; faults now: {self.faults()}") from None
        self.figures.setdefault("trouble_on_s" if on else "trouble_off_s", round(time.monotonic() - t0, 2))
        return time.monotonic() - t0

    async def restart_daemon(self) -> subprocess.Popen[bytes]:
        """SIGTERM the running daemon, wait for it, start a new one on the same config and state."""
        proc = self.daemons[-1]
        proc.terminate()
        assert await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15) == 0
        return await self.run_daemon()

    def lora_device_status(self, device_id: str) -> dict[str, Any]:
        return self.status()["drivers"]["lora"]["detail"]["devices"].get(device_id, {})

    def faults(self) -> dict[str, str]:
        return {f["source"]: f["reason"] for f in self.status()["trouble"]}

    async def stop(self) -> list[int]:
        codes = []
        for proc in self.daemons:
            if proc.poll() is None:
                proc.terminate()
                try:
                    await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            codes.append(proc.returncode)
        self.view.stop()
        await self.cy.stop()
        return codes
