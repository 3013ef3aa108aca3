"""The guard-room sounder and strobe: relay-box coils driven from the set of alarms that want them.

The sounder pulses on_s/off_s from the newest sounding alarm for at most max_duration_s; the strobe
stays on until every such alarm is acknowledged (silence stops only the sounder). Writes start the
moment an alarm is raised, beside (not after) its durable commit (reliability.md §1.4 P1).
"""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger

from gateway.actions.context import ActionContext
from gateway.actions.schema import Sounder
from gateway.actions.tasks import ActionTasks
from gateway.model import Command


class SounderControl:
    def __init__(self, cfg: Sounder, ctx: ActionContext, tasks: ActionTasks, log: FilteringBoundLogger) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.tasks = tasks
        self.log = log.bind(action="sounder", device_id=cfg.device)
        self._written: dict[str, bool | None] = {o: None for o in (*cfg.sounder_outputs, *cfg.strobe_outputs)}
        self._busy: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._failing = False
        self.counters = {"writes": 0, "write_failures": 0}

    @property
    def fitted(self) -> bool:
        return bool(self.cfg.device)

    def desired(self, sound_since: list[float], strobe: bool, now: float) -> dict[str, bool]:
        """Coil states for now: `sound_since` are the raise times of alarms that want the sounder."""
        sound = False
        if sound_since:
            age = now - max(sound_since)  # a new alarm restarts the pattern and the time limit
            if 0 <= age < self.cfg.max_duration_s:
                period = self.cfg.on_s + self.cfg.off_s
                sound = self.cfg.off_s == 0 or (age % period) < self.cfg.on_s
        want = {o: sound for o in self.cfg.sounder_outputs}
        want.update({o: strobe for o in self.cfg.strobe_outputs})
        return want

    def sync(self, sound_since: list[float], strobe: bool, now: float, reason: str = "") -> None:
        """Start a write for every coil whose state differs from what was last written (never blocks)."""
        if not self.fitted:
            return
        for output, value in self.desired(sound_since, strobe, now).items():
            if output in self._busy or self._written[output] == value:
                continue
            if now < self._retry_at.get(output, 0.0):
                continue
            self._busy.add(output)
            self.tasks.spawn("sounder", self.cfg.device, self._write(output, value, now, reason))

    async def _write(self, output: str, value: bool, now: float, reason: str) -> None:
        cmd = Command(device_id=self.cfg.device, target=output, value=value, reason=reason)
        try:
            self.counters["writes"] += 1
            await self.ctx.actuate(cmd)
        except Exception:
            self.counters["write_failures"] += 1
            self._written[output] = None  # unknown: write again after retry_s
            self._retry_at[output] = now + self.cfg.retry_s
            if self._failing:
                self.log.debug("sounder_write_failed_again", output=output, value=value)
                return  # reported once per outage; repeats are counted
            self._failing = True
            raise
        finally:
            self._busy.discard(output)
        self._written[output] = value
        self._retry_at.pop(output, None)
        if self._failing:
            self._failing = False
            self.log.info("sounder_write_recovered", output=output)

    def state(self) -> dict[str, bool | None]:
        return dict(self._written)
