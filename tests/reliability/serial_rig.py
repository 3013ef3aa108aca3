"""Shared rig for the serial proof rows (R12): the simulated demo courtyard, the real daemon as a
subprocess, and a status sampler polling the daemon's control socket off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.control.client import DaemonUnavailable, call
from gateway.simulate.courtyard import Courtyard, load
from tests.reliability.matrix_rig import courtyard_file
from tests.support.wait import async_wait_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Sample:
    t: float  # time.monotonic() in the test process
    drivers: dict[str, Any]
    uptime_s: float  # never goes back while it is the same daemon process


@dataclass
class Rig:
    cy: Courtyard
    daemon: subprocess.Popen
    socket: str
    samples: list[Sample] = field(default_factory=list)

    async def status(self) -> dict[str, Any]:
        # The client blocks; the simulators share this loop, so call it from a thread.
        return (await asyncio.to_thread(call, self.socket, "status", None, 5.0)).result

    async def sample_forever(self, every_s: float = 0.1) -> None:
        while True:
            with contextlib.suppress(DaemonUnavailable):
                st = await self.status()
                self.samples.append(Sample(time.monotonic(), st["drivers"], st["uptime_s"]))
            await asyncio.sleep(every_s)

    def latest(self, port: str) -> dict[str, Any]:
        return self.samples[-1].drivers[port] if self.samples else {}

    def counter(self, port: str, name: str) -> int:
        return int(self.latest(port).get("counters", {}).get(name, 0))


@contextlib.asynccontextmanager
async def daemon_on_courtyard(tmp_path: Path, broker_url: str) -> AsyncIterator[Rig]:
    spec_path = courtyard_file(tmp_path)
    out = tmp_path / "gateway.toml"
    cy = Courtyard(load(spec_path), spec_path, out, broker_url, time_scale=1.0)
    await cy.start()
    log = (tmp_path / "daemon.log").open("wb")  # a file, not a pipe: a full pipe would stall the daemon
    daemon = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(out)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=log)
    rig = Rig(cy, daemon, str(cy.workdir / "control.sock"))
    sampler = asyncio.get_running_loop().create_task(rig.sample_forever())
    try:
        await async_wait_for(lambda: rig.samples, 30, what="daemon answering on the control socket")
        yield rig
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        daemon.send_signal(signal.SIGTERM)
        try:
            rc = daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            rc = -9
        await cy.stop()
        log.close()
        err = (tmp_path / "daemon.log").read_text(errors="replace")[-3000:]
        assert rc == 0, f"daemon exit {rc}: {err}"
