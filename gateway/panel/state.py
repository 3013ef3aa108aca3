"""What the panel shows, built from the daemon's replies: one snapshot per poll (trouble, active alarms
joined with their device's place and resident, who the notification policy has texted so far, and the
walk test's checklist), pushed to every open page. The daemon stays the only truth; the panel keeps
nothing that matters across a restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway import log as logsetup
from gateway.actions.schema import Notify
from gateway.actions.sms import recipients
from gateway.config.schema import Config
from gateway.panel.link import ControlLink, LinkDown

RESIDENT_ZH = {"elderly_alone": "独居老人", "disabled": "残疾人", "ordinary": "普通住户", "common_area": "公共区域"}
TYPE_ZH = {"smoke": "烟雾报警", "gas": "燃气泄漏", "water_flow": "水流指示", "manhole": "井盖", "hydrant": "消火栓",
           "pump_station": "消防泵房", "relay_box": "门卫室继电器"}
WALK_IDLE_S = 3.0  # how late the installer view may notice that a walk started

STATE_ZH = {"raised": "报警中", "acknowledged": "已确认", "cleared": "已清除"}


class Snapshot:
    """The latest view plus a version number each open page waits on."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {"link": {"up": False, "reason": "starting"}, "trouble": [], "alarms": [], "walk": None}
        self.version = 0
        self._changed = asyncio.Condition()

    async def publish(self, data: dict[str, Any]) -> None:
        if data == self.data:
            return
        async with self._changed:
            self.data = data
            self.version += 1
            self._changed.notify_all()

    async def wait_newer(self, version: int, timeout_s: float) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version > version), timeout_s)
            except TimeoutError:
                pass


class Poller:
    def __init__(self, link: ControlLink, cfg: Config, snapshot: Snapshot, period_s: float) -> None:
        self.link, self.cfg, self.snapshot, self.period_s = link, cfg, snapshot, period_s
        self.devices = {d.id: d for d in cfg.devices}
        self.notify: Notify = cfg.extra.get("notify") or Notify()
        self.log = logsetup.get(stage="panel")
        self._down_logged = False
        self._walk: dict[str, Any] | None = None
        self._walk_next = 0.0

    async def run(self) -> None:
        while True:
            try:
                data = await self.poll_once()
                if self._down_logged:
                    self.log.info("panel_daemon_reachable")
                    self._down_logged = False
            except LinkDown as exc:
                data = {**self.snapshot.data, "link": {"up": False, "reason": str(exc)}}
                if not self._down_logged:
                    self.log.warning("panel_daemon_unreachable", reason=str(exc))
                    self._down_logged = True
            await self.snapshot.publish(data)
            await asyncio.sleep(self.period_s)

    async def poll_once(self) -> dict[str, Any]:
        status = await self.link.call("status")
        alarms = await self.link.call("alarms", {"active": True})
        return {
            "link": {"up": True, "reason": ""},
            "gateway_id": status.result.get("gateway_id", "") if status.ok else "",
            "trouble": list(status.result.get("trouble", [])) if status.ok else [],
            "alarms": [self.alarm_row(a) for a in (alarms.result if alarms.ok else [])],
            "walk": await self.walk(),
        }

    async def walk(self) -> dict[str, Any] | None:
        """The walk test's report (issue 23's `walk_status`). Asked every poll while a walk runs, else every
        WALK_IDLE_S: each refused ask ("no_walk", or "unknown_command" from a daemon without the walk test)
        counts as `rejected` in the daemon's control counters, which should mean something."""
        now = time.monotonic()
        if now < self._walk_next:
            return self._walk
        reply = await self.link.call("walk_status")
        self._walk = reply.result if reply.ok else None
        self._walk_next = now + (0 if self._walk and self._walk.get("active") else WALK_IDLE_S)
        return self._walk

    def alarm_row(self, a: dict[str, Any]) -> dict[str, Any]:
        dev = self.devices.get(a["device_id"])
        raised_wall = a["raised"][0]
        row = {
            "id": a["id"], "title": a["title"], "state": a["state"], "state_zh": STATE_ZH.get(a["state"], a["state"]),
            "severity": a["severity"], "device_id": a["device_id"], "raised_wall": raised_wall,
            "acknowledged_by": a.get("acknowledged_by", ""),
            "building": dev.building if dev else "", "unit": dev.unit if dev else "", "room": dev.room if dev else "",
            "place": dev.location.label() if dev else a["device_id"],
            "resident": str(dev.resident) if dev else "", "resident_zh": RESIDENT_ZH.get(str(dev.resident), "") if dev else "",
            "what": TYPE_ZH.get(self._type(dev), a["title"]),
            "notified": self.notified(dev, raised_wall, a["state"]),
        }
        return row

    def _type(self, dev: Any) -> str:
        prof = self.cfg.profiles.get(dev.profile) if dev else None
        return str(getattr(prof, "type", "")) if prof else ""

    def notified(self, dev: Any, raised_wall: float, state: str) -> list[str]:
        """Who the escalation policy has texted by now (tiers due since the alarm was raised; an
        acknowledged alarm escalates no further). The policy's view, not delivery receipts: the control
        socket does not report SMS delivery (docs/panel.md)."""
        age = time.time() - raised_wall
        out: list[str] = []
        for tier in self.notify.tiers:
            if tier.after_s <= max(age, 0) or tier.after_s == 0:
                out += [f"{c.name}" for c in recipients(tier.roles, dev, list(self.cfg.contacts)) if c.name not in out]
            if state != "raised":
                break
        return out
