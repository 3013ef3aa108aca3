"""Control-socket (and platform) commands of the care for residents living alone (issue 22): the flats the
inactivity rules watch, and away mode per flat. Registered beside gateway/control/handlers.py's table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import CommandRejected
from gateway.rules import away

if TYPE_CHECKING:
    from gateway.daemon import Daemon

MUTATING = {"resident_away"}


def _args(args: dict[str, Any]) -> tuple[str, float, str]:
    flat, until, by = args.get("flat"), args.get("until_wall_s", 0), args.get("by", "")
    if not isinstance(flat, str) or not 0 < len(flat) <= 64:
        raise CommandRejected("bad_args", "flat must be a non-empty string of at most 64 characters, e.g. 2-1-401")
    if isinstance(until, bool) or not isinstance(until, (int, float)) or until < 0:
        raise CommandRejected("bad_args", "until_wall_s must be a Unix time (0 = back home)")
    if not isinstance(by, str) or not 0 < len(by) <= 64:
        raise CommandRejected("bad_args", "by must name who set it (at most 64 characters)")
    return flat, float(until), by


def build(d: Daemon) -> dict[str, Any]:
    state_dir = Path(d.cfg.store.path).parent

    def _engine() -> Any:
        if d.rules is None:
            raise CommandRejected("no_rule_engine", "this gateway runs no rules")
        return d.rules

    async def residents(args: dict[str, Any]) -> list[dict[str, Any]]:
        return away.view(_engine(), d.clock.monotonic(), d.clock.wall())

    async def resident_away(args: dict[str, Any]) -> dict[str, Any]:
        flat, until, by = _args(args)
        return await away.set_away(_engine(), state_dir, flat, until, f"cli:{by}")

    async def platform_resident_away(args: dict[str, Any]) -> dict[str, Any]:
        flat, until, by = _args(args)
        return await away.set_away(_engine(), state_dir, flat, until, f"platform:{by}")

    return {"residents": residents, "resident_away": resident_away, "platform_resident_away": platform_resident_away}
