"""Control-socket commands of the inspection tests: the daemon adds these to control_handlers.build(...).

    test_fire {"device"?, "by"}        inject a simulated fire alarm marked as a test
    test_power {"by", "window_s"?}     arm a mains switchover test; test_power_status {} follows it
    selfcheck_run {"by"}               the daily self-check, now
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.errors import CommandRejected
from gateway.selfcheck import CONTROL_MUTATING
from gateway.selfcheck.inspections import Inspections
from gateway.selfcheck.runner import SelfCheckScheduler

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
MUTATING = set(CONTROL_MUTATING)


def _by(args: dict[str, Any]) -> str:
    by = args.get("by", "cli")
    if not isinstance(by, str) or not by or len(by) > 64:
        raise CommandRejected("bad_args", "by must be a non-empty string of at most 64 characters")
    return by


def build(inspections: Inspections, scheduler: SelfCheckScheduler | None) -> dict[str, Handler]:
    async def test_fire(args: dict[str, Any]) -> dict[str, Any]:
        device = args.get("device")
        if device is not None and (not isinstance(device, str) or not 0 < len(device) <= 64):
            raise CommandRejected("bad_args", "device must be a device id")
        return await inspections.fire_test(device, _by(args))

    async def test_power(args: dict[str, Any]) -> dict[str, Any]:
        window = args.get("window_s")
        if window is not None and (isinstance(window, bool) or not isinstance(window, (int, float)) or not 10 <= window <= 1800):
            raise CommandRejected("bad_args", "window_s must be a number in 10..1800")
        return await inspections.power_test_start(_by(args), float(window) if window is not None else None)

    async def test_power_status(args: dict[str, Any]) -> dict[str, Any]:
        return inspections.power_test_status()

    async def selfcheck_run(args: dict[str, Any]) -> dict[str, Any]:
        if scheduler is None:
            raise CommandRejected("no_selfcheck", "the self-check is not running in this daemon")
        return await scheduler.run_now(_by(args))

    return {"test_fire": test_fire, "test_power": test_power, "test_power_status": test_power_status,
            "selfcheck_run": selfcheck_run}
