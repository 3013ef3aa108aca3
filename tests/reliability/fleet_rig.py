"""A matrix rig whose daemon is restarted when it exits with RESTART_EXIT, as systemd's
Restart=always does on a gateway, plus a platform client that signs commands and waits for replies."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

from gateway.fleet import RESTART_EXIT
from gateway.platform.signing import sign_command
from tests.integration.uplink_support import Platform
from tests.reliability.matrix_rig import Rig
from tests.support.wait import async_wait_for

GW = "gw-xinhong-03"


class FleetRig(Rig):
    def __init__(self, tmp_path: Path, broker: Any) -> None:
        super().__init__(tmp_path, broker)
        self.restarted: list[subprocess.Popen[bytes]] = []  # exited RESTART_EXIT, kept out of the exit-0 check
        self.restart_times: list[float] = []  # monotonic instant each restart-exit was seen
        self.platform: Platform | None = None
        self._keeper: asyncio.Task[None] | None = None
        self.why_not_ready: list[str] = []

    async def start_all(self) -> None:
        await self.start()
        await self.run_daemon()
        self.platform = Platform(self.broker.port, client_id="fleet-test-platform")
        await async_wait_for(lambda: self.status().get("uplink", {}).get("up"), 30, what="uplink up")
        self._keeper = asyncio.create_task(self._keep())

    async def _keep(self) -> None:
        """Restart on RESTART_EXIT (bounded by the test's own timeouts: this task is cancelled at stop)."""
        while True:
            proc = self.daemons[-1]
            if proc.poll() == RESTART_EXIT:
                self.restart_times.append(time.monotonic())
                self.daemons.remove(proc)
                self.restarted.append(proc)
                self.spawn()
            await asyncio.sleep(0.01)

    @property
    def key(self) -> tuple[str, str]:
        creds = tomllib.loads(Path(tomllib.loads(self.config.read_text())["uplink"]["credentials_file"]).read_text())
        return next(iter(creds["command_keys"].items()))

    def signed(self, command: str, args: dict[str, Any], **kw: Any) -> bytes:
        key_id, key = self.key
        return sign_command(key_id, key, GW, command, args, **kw)

    async def send(self, payload: bytes, timeout_s: float = 15) -> dict[str, Any]:
        assert self.platform is not None
        cmd_id = json.loads(payload)["id"]
        seen = len(self.replies(cmd_id))
        await asyncio.to_thread(self.platform.publish, f"cg/v1/{GW}/cmd", payload)
        await async_wait_for(lambda: len(self.replies(cmd_id)) > seen, timeout_s, what=f"reply to {cmd_id}")
        return self.replies(cmd_id)[-1]

    def replies(self, cmd_id: str) -> list[dict[str, Any]]:
        assert self.platform is not None
        return [r for r in self.platform.on("reply") if r.get("id") == cmd_id]

    def alarm_path_ready(self) -> bool:
        """Every port open and the rules running: the daemon can sound the sounder again."""
        from gateway.fleet.commit import unhealthy

        try:
            self.why_not_ready = unhealthy(self.status(), uplink_required=False)
        except Exception as exc:  # noqa: BLE001 - daemon not answering yet
            self.why_not_ready = [repr(exc)]
        return not self.why_not_ready

    async def wait_alarm_path(self, timeout_s: float = 30) -> float:
        """Wait until alarm_path_ready(); returns the monotonic instant it became so."""
        try:
            await async_wait_for(self.alarm_path_ready, timeout_s, interval_s=0.02, what="alarm path ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: {self.why_not_ready}") from None
        return time.monotonic()

    async def stop(self) -> list[int]:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        if self.platform is not None:
            self.platform.close()
        return await super().stop()
