"""The daemon's trouble checks (issue 15, item 7): one per subsystem, each answering "" or why it is at
fault. Deadlines count from the fault's start (CLARIFICATIONS Turn 2), which each check takes from the
subsystem's own clock; gateway.trouble.TroubleMonitor asks them and drives the guard room's output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import Driver, DriverState
from gateway.actions.schema import Trouble as TroubleConfig

if TYPE_CHECKING:
    from gateway.daemon import Daemon

Check = Callable[[], str]


def store_fault(outbox: Any, open_error: str) -> str:
    """"" or why the store is at fault: not opened, down (read-only, full, I/O errors), or recovered on a
    new file after corruption while the corrupt copy is still kept."""
    if outbox is None:
        return open_error or "not opened"
    health = getattr(outbox, "health", None)
    if callable(health):
        h = health()
        if h.get("state", "up") not in ("up", "ok"):
            return str(h.get("reason") or h.get("state"))
        moved = h.get("moved_to")
        if moved and Path(moved).exists():
            # The store recovered on a new file, but a corrupt database says the card is failing: a
            # maintainer looks, then deletes the kept copy, which clears this.
            return f"corrupt database moved aside to {moved}: check the card, then delete that file"
        return ""
    if open_error:
        return open_error
    if not outbox.writer_alive():
        return "writer thread stopped"
    return ""


class DaemonChecks:
    """The checks of one running daemon; they read its stages each time, so a stage rebuilt by the
    supervisor (uplink, GB/T 26875 link) is the one checked."""

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self._driver_down_since: dict[str, float] = {}
        self._link_down_since: dict[str, float | None] = {}

    def build(self, cfg: TroubleConfig) -> dict[str, Check]:
        d = self.d
        checks: dict[str, Check] = {"store": d.check_store}
        if d.credentials_error:
            checks["credentials"] = lambda: (f"{d.credentials_error} (keyed LoRa detectors are not heard: fix the file, "
                                             "then restart the daemon)")
        if d.cfg.uplink.broker_url:
            checks["uplink"] = lambda: self.link("uplink", d.uplink, cfg.uplink_after_s)
        if "gb26875" in d.consumers():
            checks["gb26875"] = lambda: self.link("gb26875", d.gb26875, cfg.centre_after_s)
        for name, drv in d.drivers.items():
            checks[f"port:{name}"] = self._driver_check(name, drv, cfg.bus_after_s)
        notify = d.cfg.notify
        if notify is not None and notify.sounder.device in d.devices:
            checks["sounder"] = lambda: self.device_answers(notify.sounder.device)
        checks["control"] = lambda: "" if d.task_running("control") else (d.task_error("control") or "not running")
        if d.inspection is not None:
            checks.update(d.inspection.trouble_checks())  # power, a failed or missed self-check, an alarm past 10 s
        elif d.inspection_error:
            checks["inspection"] = lambda: f"power supervision and self-check not running: {d.inspection_error}"
        return checks

    def link(self, name: str, link: Any, after_s: float) -> str:
        d = self.d
        if link is None:  # not constructed yet, or its construction fails (then the supervisor retries)
            if d.clock.monotonic() - d.started_mono <= after_s:
                return ""
            return f"not running: {d.task_error(name) or 'starting'}"
        down = link.down_for_s() if hasattr(link, "down_for_s") else self._link_down_for(name, link)
        h = link.health()
        if h.get("config_fault"):  # a missing certificate or refused credentials: no reconnect will fix it
            return f"{h.get('reason')}: {h.get('detail') or ''}".rstrip(": ")
        if down <= after_s:
            # Connected as far as TCP knows, but a blackholed link is only noticed at the keepalive
            # timeout (1.5 x keepalive): records in flight without a PUBACK for after_s is the earlier sign.
            waiting = h.get("last_puback_age_s")
            waiting = h.get("state_age_s") if waiting is None else waiting
            if h.get("inflight") and waiting is not None and waiting > after_s:
                return f"no acknowledgement for {waiting:.0f} s ({h.get('inflight')} in flight)"
            return ""
        why = h.get("reason") or h.get("last_error") or h.get("state", "")
        return f"not connected for {down:.0f} s ({why})"

    def _link_down_for(self, name: str, link: Any) -> float:
        """Seconds since `link` was last connected (for stages that do not keep it themselves)."""
        now = self.d.clock.monotonic()
        if str(link.health().get("state")) == "connected":
            self._link_down_since[name] = None
            return 0.0
        since = self._link_down_since.get(name)
        if since is None:
            since = self._link_down_since[name] = now
        return now - since

    def _driver_check(self, name: str, drv: Driver, after_s: float) -> Check:
        return lambda: self.driver(name, drv, after_s)

    def driver(self, name: str, drv: Driver, after_s: float) -> str:
        h = drv.health()
        now = self.d.clock.monotonic()
        if h.state != DriverState.DOWN:
            self._driver_down_since.pop(name, None)
            return ""
        since = self._driver_down_since.setdefault(name, now)
        if now - since < after_s:
            return ""
        why = (h.detail or {}).get("port_error") or (h.detail or {}).get("error") or "port down"
        return f"down for {now - since:.0f} s ({why})"

    def device_answers(self, device_id: str) -> str:
        """The relay box itself: a sounder that does not answer cannot sound (issue 15 matrix row)."""
        d = self.d
        drv = d.drivers.get(d.devices[device_id].port)
        if drv is None:
            return ""
        s = (drv.health().detail or {}).get("slaves", {}).get(device_id)
        if s and s.get("state") == "offline":
            return f"relay box {device_id} not answering ({s.get('last_error') or 'no reply'})"
        return ""
