"""The power stage: polls upsd, keeps the power conditions, reports their changes, powers off on LB.

    upsd --LIST VAR--> PowerState --PowerEvent--> on_change (outbox record, GB 26875 type 21 bits)
                                       `--battery_low while on battery--> LowBatteryShutdown
`run()` never raises for upsd trouble: an unreadable UPS is itself a condition (backup_fault).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateway.power.config import PowerSection
from gateway.power.nut import NutSource, UpsReading, UpsUnreadable
from gateway.power.shutdown import LowBatteryShutdown
from gateway.power.state import Condition, PowerEvent, PowerState
from gateway.supervise import Backoff

OnChange = Callable[[PowerEvent], Awaitable[None] | None]
CALLBACK_TIMEOUT_S = 10.0  # an outbox put that takes longer is a store fault; the monitor must go on


class UpsSource(Protocol):
    async def read(self) -> UpsReading: ...
    async def instcmd(self, command: str) -> None: ...
    def close(self) -> None: ...


class PowerMonitor:
    def __init__(self, cfg: PowerSection | None, clock: Any, log: Any, on_change: OnChange | None = None,
                 shutdown: LowBatteryShutdown | None = None, source: UpsSource | None = None) -> None:
        self.cfg = cfg or PowerSection()
        self.clock = clock
        self.log = log.bind(component="power", ups=self.cfg.ups) if hasattr(log, "bind") else log
        self.on_change = on_change
        self.shutdown = shutdown
        self.source: UpsSource | None = source
        self.state = PowerState()
        self.recent: collections.deque[PowerEvent] = collections.deque(maxlen=64)
        self.counters = {"reads": 0, "read_failures": 0, "events": 0, "callback_errors": 0, "shutdowns": 0}
        self.since_wall_s = clock.wall()
        self._health_state = "off" if not self.cfg.configured else "down"
        self._reason = "no UPS configured" if not self.cfg.configured else "not read yet"
        self._last_read_wall_s: float | None = None
        self._wake = asyncio.Event()
        self._shutdown_started = False

    # ---- public ---------------------------------------------------------------------------------
    def poll_now(self) -> None:
        """Read upsd at once (tests; `gateway test power`)."""
        self._wake.set()

    def health(self) -> dict[str, Any]:
        r = self.state.reading
        active = self.state.active
        return {"state": self._health_state, "reason": self._reason, "since_wall_s": self.since_wall_s,
                "ups": self.cfg.ups or None,
                "mains": None if r is None and not active else ("lost" if Condition.MAINS_LOST in active else "on"),
                "battery": {"charge_pct": r.charge_pct if r else None, "runtime_s": r.runtime_s if r else None,
                            "on_battery": Condition.ON_BATTERY in active, "low": Condition.BATTERY_LOW in active,
                            "fault": Condition.BACKUP_FAULT in active},
                "ups_status": r.raw_status if r else None, "conditions": {str(c): why for c, why in active.items()},
                "last_read_wall_s": self._last_read_wall_s, "deadline_s": self.cfg.deadline_s, **self.counters}

    def trouble_reason(self) -> str:
        """For the trouble monitor (gateway/trouble.py Check): "" when mains and backup are fine, else why.
        Mains lost and backup faults are faults to signal locally (GB 26875.1 §4.1); no UPS is not one."""
        active = self.state.active
        parts = [f"{c}: {why}" for c, why in active.items() if c != Condition.ON_BATTERY]
        return "; ".join(parts)

    async def run(self) -> None:
        """Poll until cancelled. Without a UPS there is nothing to do: return (state "off")."""
        if not self.cfg.configured:
            self.log.info("power_not_supervised", reason="no [power] ups configured")
            return
        if self.source is None:
            self.source = NutSource(self.cfg.host, self.cfg.port, self.cfg.ups, self.cfg.timeout_s,
                                    self.cfg.username, self._password())
        # Retries of a lost upsd are spread but never slower than the poll period (the deadline counts).
        backoff = Backoff(min(1.0, self.cfg.poll_period_s), self.cfg.poll_period_s)
        try:
            while True:
                started = self.clock.monotonic()
                delay = self.cfg.poll_period_s
                if await self._poll_once():
                    backoff.reset()
                else:
                    delay = backoff.next_delay()
                self._wake.clear()
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that lands as
                # its timeout fires, and this loop then never stops (seen under load in the NUT test).
                try:
                    async with asyncio.timeout(max(0.0, started + delay - self.clock.monotonic())):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            self.source.close()

    def _password(self) -> str:
        if not self.cfg.password_file:
            return ""
        try:
            with open(self.cfg.password_file, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as exc:
            # Reading still works without a login; only the UPS return command will be refused.
            self.log.error("ups_password_unreadable", path=self.cfg.password_file, error=str(exc))
            return ""

    # ---- one poll -------------------------------------------------------------------------------
    async def _poll_once(self) -> bool:
        assert self.source is not None
        try:
            reading = await self.source.read()
        except UpsUnreadable as exc:
            self.counters["read_failures"] += 1
            first = self.state.failures == 0
            (self.log.warning if first else self.log.debug)("ups_unreadable", reason=exc.reason, detail=exc.detail)
            events = self.state.unreadable(exc.reason, self.clock.now())
            self._set_health("down", f"ups unreadable: {exc.reason}")
            await self._emit(events)
            return False
        self.counters["reads"] += 1
        self._last_read_wall_s = self.clock.wall()
        if self.state.failures:
            self.log.info("ups_readable_again", ups_status=reading.raw_status)
        events = self.state.update(reading, self.clock.now())
        active = self.state.active
        self._set_health("degraded" if active else "up", "; ".join(f"{c}: {why}" for c, why in active.items()) or reading.raw_status)
        await self._emit(events)
        if Condition.BATTERY_LOW in active and Condition.ON_BATTERY in active:
            await self._low_battery(reading)
        elif Condition.ON_BATTERY not in active:
            self._shutdown_started = False  # mains is back: a later LB episode shuts down again
        return True

    def _set_health(self, state: str, reason: str) -> None:
        if state != self._health_state:
            self.since_wall_s = self.clock.wall()
        self._health_state, self._reason = state, reason

    async def _emit(self, events: list[PowerEvent]) -> None:
        for ev in events:
            self.recent.append(ev)
            self.counters["events"] += 1
            log = self.log.warning if ev.active else self.log.info
            log(ev.name, reason=ev.reason, ups_status=ev.ups_status, battery_charge_pct=ev.charge_pct)
            if self.on_change is None:
                continue
            try:
                result = self.on_change(ev)
                if inspect.isawaitable(result):
                    async with asyncio.timeout(CALLBACK_TIMEOUT_S):
                        await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the consumer's failure must not stop power supervision
                self.counters["callback_errors"] += 1
                self.log.error("power_event_not_delivered", power_event=ev.name, error=f"{type(exc).__name__}: {exc}")

    async def _low_battery(self, reading: UpsReading) -> None:
        """OB LB: once per episode, flush -> tell the platform -> (UPS return command) -> power off."""
        if self._shutdown_started or not self.cfg.shutdown_on_low_battery or self.shutdown is None:
            return
        self._shutdown_started = True
        self.counters["shutdowns"] += 1
        self.log.warning("low_battery_shutdown", ups_status=reading.raw_status, battery_charge_pct=reading.charge_pct,
                         battery_runtime_s=reading.runtime_s)
        instcmd = None
        if self.cfg.return_instcmd and self.source is not None:
            instcmd = lambda: self.source.instcmd(self.cfg.return_instcmd)  # noqa: E731
        await self.shutdown.run(instcmd)
