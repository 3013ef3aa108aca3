"""The daily self-check: at `[selfcheck] daily_at` local time, once per local day, judge the daemon's status,
record the result (outbox EVENT "event.selfcheck" -> MQTT and GB/T 26875.3 type 24 b4 + type 21, and the
journal), and report a failure (or a missed day) as a fault to the trouble monitor.

The loop re-reads the wall clock every `tick_s` instead of sleeping until the due time: an NTP step after a
boot without RTC (protocols.md §6) moves the due time, and tests drive it with ManualClock + `wake()`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.model import RecordClass
from gateway.power.records import RecordSink
from gateway.selfcheck.checks import CheckResult, judge
from gateway.selfcheck.config import SelfCheckSection, minutes
from gateway.selfcheck.journal import Entry, Journal

KIND = "event.selfcheck"
SETTLE_S = 600.0  # a daemon's first ten minutes: ports opening, devices reporting
MISSED_AFTER_S = 26 * 3600.0  # a daily check older than a day and two hours is itself a fault
SounderPulse = Callable[[float], Awaitable[None]]


class SelfCheckScheduler:
    def __init__(self, cfg: SelfCheckSection, clock: Any, log: Any, status: Callable[[], dict[str, Any]],
                 records: RecordSink | None, gateway_id: str, journal: Journal, sounder_pulse: SounderPulse | None = None,
                 tick_s: float = 30.0) -> None:
        self.cfg = cfg
        self.clock = clock
        self.log = log.bind(component="selfcheck") if hasattr(log, "bind") else log
        self.status = status
        self.records = records
        self.gateway_id = gateway_id
        self.journal = journal
        self.sounder_pulse = sounder_pulse
        self.tick_s = tick_s
        self.tz = cfg.tz()
        self.last_results: list[CheckResult] = []
        self.last_ok: bool | None = None
        self.last_run_mono: float | None = None
        self.started_mono = clock.monotonic()
        self.runs = 0
        self._last_date: dt.date | None = None
        last = journal.last("selfcheck")
        if last is not None and last.by == "schedule":
            self._last_date = self._local(last.wall_s).date()  # a restart does not run today's check twice
        self._wake = asyncio.Event()

    def _local(self, wall_s: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(wall_s, self.tz)

    def due(self) -> bool:
        now = self._local(self.clock.wall())
        # Never in the first SETTLE_S after a start: devices have not reported yet, and a check then would
        # fail on the restart itself (a gateway started after daily_at catches up once it has settled).
        settled = self.clock.monotonic() - self.started_mono >= SETTLE_S
        return (self.cfg.enabled and settled and now.hour * 60 + now.minute >= minutes(self.cfg.daily_at)
                and now.date() != self._last_date)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            if self.due():
                self._last_date = self._local(self.clock.wall()).date()
                await self.run_now("schedule")
            self._wake.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that lands with its timeout.
            try:
                async with asyncio.timeout(self.tick_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def run_now(self, by: str) -> dict[str, Any]:
        """One self-check (scheduled, or asked for by the CLI / platform). Returns what was recorded."""
        results = judge(self.status())
        if self.cfg.sounder_pulse and self.sounder_pulse is not None:
            results.append(await self._pulse())
        ok = all(r.ok for r in results)
        self.last_results, self.last_ok, self.last_run_mono = results, ok, self.clock.monotonic()
        self.runs += 1
        failed = [r.name for r in results if not r.ok]
        summary = "all passed" if ok else f"failed: {', '.join(failed)}"
        body = {"kind": "selfcheck", "ok": ok, "by": by, "summary": summary, "checks": [r.to_dict() for r in results]}
        (self.log.info if ok else self.log.warning)("selfcheck_done", ok=ok, by=by, failed=failed)
        try:
            self.journal.append(Entry(kind="selfcheck", wall_s=self.clock.wall(), ok=ok, by=by, summary=summary,
                                      detail={"checks": body["checks"]}))
        except OSError as exc:
            self.log.error("selfcheck_not_journalled", error=str(exc))
        if self.records is not None:
            try:
                await self.records.put(RecordClass.EVENT, KIND, self.gateway_id, self.clock.now(), body)
            except Exception as exc:  # noqa: BLE001 - a store fault is reported by its own check; still return
                self.log.error("selfcheck_not_recorded", error=f"{type(exc).__name__}: {exc}")
        return body

    async def _pulse(self) -> CheckResult:
        now = self._local(self.clock.wall())
        if self.cfg.in_quiet_hours(now.hour * 60 + now.minute):
            return CheckResult("sounder", "pass", f"pulse skipped: quiet hours {self.cfg.quiet_hours}")
        assert self.sounder_pulse is not None
        try:
            await self.sounder_pulse(self.cfg.sounder_pulse_s)
        except Exception as exc:  # noqa: BLE001 - a sounder that cannot be driven is the finding
            return CheckResult("sounder", "fail", f"pulse failed: {type(exc).__name__}: {exc}")
        return CheckResult("sounder", "pass", f"pulsed {self.cfg.sounder_pulse_s:g} s")

    def trouble_reason(self) -> str:
        """For the trouble monitor: the last check failed, or no check ran for more than a day."""
        if not self.cfg.enabled:
            return ""
        if self.last_ok is False:
            return "daily self-check failed: " + ", ".join(r.name for r in self.last_results if not r.ok)
        last = self.last_run_mono if self.last_run_mono is not None else self.started_mono
        if self.clock.monotonic() - last > MISSED_AFTER_S:
            return "no self-check for more than 26 h"
        return ""

    def health(self) -> dict[str, Any]:
        return {"enabled": self.cfg.enabled, "daily_at": self.cfg.daily_at, "timezone": self.cfg.timezone,
                "last_ok": self.last_ok, "last_date": self._last_date.isoformat() if self._last_date else None,
                "runs": self.runs, "failed": [r.name for r in self.last_results if not r.ok]}
