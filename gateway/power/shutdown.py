"""Low battery: flush the store, tell the platform, ask the UPS to restore power later, power off cleanly.

The classic field failure this prevents: a Pi on a UPS HAT that runs flat dies mid-write (SD corruption).
Every step is bounded and a failed step does not stop the next: the battery will not wait for us.
The power-off itself is injectable (tests must not power anything off).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Step = Callable[[], Awaitable[Any]]
STEP_TIMEOUT_S = 10.0  # each step; LB on a HAT typically leaves minutes, never assume more than ~1


class PowerOffCommand:
    """The default action: run `systemctl poweroff` (argv from `[power] poweroff_command`, no shell).

    The daemon's unit then gets SIGTERM like on any clean shutdown. An unprivileged service user needs a
    polkit rule allowing org.freedesktop.login1.power-off (docs/power.md)."""

    def __init__(self, argv: list[str], log: Any) -> None:
        self.argv = list(argv)
        self.log = log

    async def __call__(self) -> None:
        proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(self.argv)} exited {proc.returncode}: {err.decode(errors='replace').strip()}")
        self.log.warning("poweroff_requested", command=" ".join(self.argv))


class LowBatteryShutdown:
    """`flush` (the outbox), `announce(reason)` (the platform: online:false, reason power), `power_off`."""

    def __init__(self, power_off: Step, log: Any, flush: Step | None = None,
                 announce: Callable[[str], Awaitable[Any]] | None = None, step_timeout_s: float = STEP_TIMEOUT_S) -> None:
        self.power_off = power_off
        self.flush = flush
        self.announce = announce
        self.log = log
        self.step_timeout_s = step_timeout_s
        self.steps_done: list[str] = []  # for health and tests: what ran, in order, and how it ended

    async def run(self, ups_return: Step | None = None) -> None:
        announce = self.announce
        steps: list[tuple[str, Step | None]] = [
            ("flush", self.flush),
            ("announce", (lambda: announce("power")) if announce else None),
            ("ups_return", ups_return),
            ("power_off", self.power_off),
        ]
        for name, step in steps:
            if step is None:
                continue
            try:
                async with asyncio.timeout(self.step_timeout_s):  # not wait_for: keeps cancellation (3.11)
                    await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed step must not keep the next from running
                self.steps_done.append(f"{name}:failed")
                self.log.error("shutdown_step_failed", step=name, error=f"{type(exc).__name__}: {exc}")
            else:
                self.steps_done.append(f"{name}:ok")
