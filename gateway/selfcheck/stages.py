"""Issue 23's stages built in one call, so the daemon wires them in a few lines (docs/power.md):
the power monitor (with its outbox adapter and low-battery shutdown), the daily self-check, the
inspection tests and the reporting-deadline check, plus their trouble checks, control handlers and status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.model import Device, Item
from gateway.power.config import PowerSection
from gateway.power.monitor import PowerMonitor
from gateway.power.records import PowerRecords
from gateway.power.shutdown import LowBatteryShutdown, PowerOffCommand
from gateway.selfcheck import control
from gateway.selfcheck.config import SelfCheckSection
from gateway.selfcheck.deadline import ReportDeadline
from gateway.selfcheck.inspections import Inspections
from gateway.selfcheck.journal import Journal, default_path
from gateway.selfcheck.runner import SelfCheckScheduler

UPLINK_CONSUMERS = ("mqtt", "gb26875")


@dataclass
class InspectionStages:
    power: PowerMonitor
    selfcheck: SelfCheckScheduler
    inspections: Inspections
    deadline: ReportDeadline

    def trouble_checks(self) -> dict[str, Callable[[], str]]:
        """For TroubleMonitor.add_check: power faults, a failed/missed self-check, an alarm past 10 s."""
        return {"power": self.power.trouble_reason, "selfcheck": self.selfcheck.trouble_reason,
                "report_deadline": self.deadline.trouble_reason}

    def control_handlers(self) -> dict[str, control.Handler]:
        return control.build(self.inspections, self.selfcheck)

    def status(self) -> dict[str, Any]:
        return {"power": self.power.health(), "selfcheck": self.selfcheck.health()}

    async def stop(self) -> None:
        await self.inspections.stop()


def build(cfg: Any, clock: Any, outbox: Any, emit: Callable[[Item], None], devices: dict[str, Device],
          status: Callable[[], dict[str, Any]], announce: Callable[[str], Awaitable[Any]] | None,
          consumers: Iterable[str], get_log: Callable[..., Any]) -> InspectionStages:
    """`cfg` is the loaded Config (its extra["power"] / extra["selfcheck"], defaults when absent)."""
    power_cfg: PowerSection = cfg.extra.get("power") or PowerSection()
    sc_cfg: SelfCheckSection = cfg.extra.get("selfcheck") or SelfCheckSection()
    gateway_id = cfg.identity.gateway_id
    journal = Journal(sc_cfg.journal_path or default_path(cfg.store.path))
    inspections = Inspections(sc_cfg, clock, get_log(stage="inspections"), journal, outbox, gateway_id, emit, devices,
                              power_cfg.configured)
    log = get_log(stage="power")
    shutdown = LowBatteryShutdown(PowerOffCommand(list(power_cfg.poweroff_command), log), log,
                                  flush=outbox.flush if outbox is not None else None, announce=announce)
    power = PowerMonitor(power_cfg, clock, log, on_change=PowerRecords(outbox, gateway_id, also=[inspections.on_power_event]),
                         shutdown=shutdown)
    selfcheck = SelfCheckScheduler(sc_cfg, clock, get_log(stage="selfcheck"), status, outbox, gateway_id, journal)
    deadline = ReportDeadline(outbox, clock, [c for c in consumers if c in UPLINK_CONSUMERS])
    return InspectionStages(power, selfcheck, inspections, deadline)
