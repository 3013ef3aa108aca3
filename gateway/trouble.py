"""Local trouble signalling: every fault of a function other than fire alarming is indicated in the guard
room, distinct from fire, within 100 s of its start, and cleared when it clears (issue 15, item 7).

Fire panels (GB 4717, EN 54-2) and the user information transmission device of GB 26875.1 §4.1 promise
exactly this: a failed transmission, a dead store or a dead bus gives an audible/visible *fault* signal,
never silence and never a fire signal. The monitor asks each subsystem one question every
`check_period_s` ("what is wrong with you, and since when?") and drives the relay box's trouble output
from the answers. It depends on nothing that can be down: a failed write of the output is retried next
period, and the faults are also in `gateway status`, the retained status and the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec

from gateway.actions.schema import Trouble as TroubleConfig
from gateway.clock import Clock
from gateway.model import Command


class Fault(msgspec.Struct, frozen=True):
    """One active fault: which subsystem, why, and since when (wall clock, for people)."""

    source: str  # "store", "uplink", "gb26875", "port:rs485", "power", ...
    reason: str
    since_wall_s: float


# A check answers "" when all is well, else a short reason ("read-only file system", "down 75 s: refused").
Check = Callable[[], str]
Actuate = Callable[[Command], Awaitable[None]]
Changed = Callable[[Fault, bool], None]  # (fault, active): a fault came or went (log, outbox record)


@dataclass
class _Output:
    written: bool | None = None  # None: unknown (never written, or the last write failed)


class TroubleMonitor:
    def __init__(self, cfg: TroubleConfig, device: str, checks: dict[str, Check], actuate: Actuate, clock: Clock,
                 log: object, on_change: Changed | None = None) -> None:
        self.cfg = cfg
        self.device = device  # "" = no relay box: status and log only
        self.checks = checks
        self.actuate = actuate
        self.clock = clock
        self.log = log
        self.on_change = on_change
        self.active: dict[str, Fault] = {}
        self._outputs = {o: _Output() for o in cfg.outputs} if device else {}
        self.counters = {"checks": 0, "faults_raised": 0, "output_write_failures": 0}

    def add_check(self, source: str, check: Check) -> None:
        self.checks[source] = check

    def evaluate(self) -> list[Fault]:
        """Run every check once; return the faults active now (first seen times kept)."""
        self.counters["checks"] += 1
        now = self.clock.wall()
        for source, check in list(self.checks.items()):
            try:
                reason = check()
            except Exception as exc:  # noqa: BLE001 - a broken check is itself a fault, never a crash
                reason = f"check failed: {exc!r}"[:200]
            old = self.active.get(source)
            if reason and old is None:
                fault = Fault(source, reason, now)
                self.active[source] = fault
                self.counters["faults_raised"] += 1
                self.log.warning("fault_raised", source=source, reason=reason)  # type: ignore[attr-defined]
                if self.on_change:
                    self.on_change(fault, True)
            elif reason and old is not None and old.reason != reason:
                self.active[source] = Fault(source, reason, old.since_wall_s)  # same fault, newer words
            elif not reason and old is not None:
                del self.active[source]
                self.log.info("fault_cleared", source=source, lasted_s=round(now - old.since_wall_s, 1))  # type: ignore[attr-defined]
                if self.on_change:
                    self.on_change(old, False)
        return self.faults()

    def faults(self) -> list[Fault]:
        return sorted(self.active.values(), key=lambda f: f.since_wall_s)

    async def sync_outputs(self) -> None:
        """Write each trouble output that differs from what it should be (or whose state is unknown)."""
        want = bool(self.active)
        for name, out in self._outputs.items():
            if out.written == want:
                continue
            try:
                await self.actuate(Command(self.device, name, want, reason="trouble"))
                out.written = want
            except Exception as exc:  # noqa: BLE001 - the relay box may itself be the fault: retry next period
                out.written = None
                self.counters["output_write_failures"] += 1
                self.log.debug("trouble_output_write_failed", output=name, error=str(exc)[:120])  # type: ignore[attr-defined]

    async def run(self) -> None:
        while True:
            self.evaluate()
            await self.sync_outputs()
            await asyncio.sleep(self.cfg.check_period_s)

    def health(self) -> dict[str, object]:
        return {
            "state": "trouble" if self.active else "ok",
            "faults": [msgspec.to_builtins(f) for f in self.faults()],
            "outputs": {n: o.written for n, o in self._outputs.items()},
            "counters": dict(self.counters),
        }
