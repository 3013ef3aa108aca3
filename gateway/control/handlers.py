"""What the control socket can ask of the running daemon: the typed ControlApi, one method per
command, arguments validated here (the socket is input like any other). The same object serves the
platform's signed downlink commands (`downlink_handlers`): one implementation, two doors.

Result shapes are documented in docs/CLI.md as a stable interface; fields are only ever added.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from gateway import log as logsetup
from gateway.commission.walk import DEFAULT_DURATION_S, MAX_DURATION_S, WalkSession
from gateway.control import logring
from gateway.errors import CommandRejected
from gateway.fleet.api import FleetApi
from gateway.fleet.diagnostics import Diagnostics
from gateway.fleet.update import UpdateApi
from gateway.model import Alarm, AlarmState, Severity
from gateway.selfcheck import CONTROL_MUTATING as INSPECTION_MUTATING

if TYPE_CHECKING:
    from gateway.daemon import Daemon

Args = dict[str, Any]
Handler = Callable[[Args], Awaitable[Any]]

LOG_LEVELS = ("debug", "info", "warning", "error")
MUTATING = {"alarm_ack", "alarm_silence", "alarm_clear", "queue_purge", "poll", "set_log_level", "actuate",
            "operator_check_confirm", "walk_start", "walk_stop", *INSPECTION_MUTATING}
ALARM_PREFIX_MIN = 4  # shorter prefixes are too easy to mistype into someone else's alarm


def _str_arg(args: Args, key: str, max_len: int = 64) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise CommandRejected("bad_args", f"{key} must be a non-empty string of at most {max_len} characters")
    return value


def _num_arg(args: Args, key: str, default: float, lo: float, hi: float) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise CommandRejected("bad_args", f"{key} must be a number in {lo:g}..{hi:g}")
    return float(value)


def alarm_view(alarm: Alarm, silenced: bool) -> dict[str, Any]:
    """An alarm with named fields. The positional `raised`/`updated` stamps and the numeric `severity`
    stay for existing readers (CLARIFICATIONS Turn 2); the named fields beside them are the ones to use."""
    out: dict[str, Any] = msgspec.to_builtins(alarm)
    out.update(
        severity_name=Severity(alarm.severity).name.lower(),
        raised_wall_s=alarm.raised.wall_s, raised_synced=alarm.raised.clock_synced, updated_wall_s=alarm.updated.wall_s,
        silenced=silenced,
        display_state="silenced" if silenced and alarm.state == AlarmState.RAISED else str(alarm.state),
    )
    return out


class ControlApi:
    """The daemon's control commands. Reads the daemon's stages at call time (they start after it)."""

    def __init__(self, d: Daemon) -> None:
        self.d = d
        self.walk: WalkSession | None = None
        self.fleet = FleetApi(d)  # config_apply / config_status (issue 20, docs/fleet.md)
        self.update = UpdateApi(d, self.fleet)  # update / update_status (issue 20, docs/fleet.md)
        self.diagnostics = Diagnostics(self)  # support_bundle, selftest, logs_fetch, modbus_read, lora_listen
        logring.install()

    def handlers(self) -> dict[str, Handler]:
        """The control socket's command table (ControlServer)."""
        return {
            "status": self.status, "devices": self.devices, "device": self.device,
            "alarms": self.alarms, "alarm_ack": self.alarm_ack, "alarm_silence": self.alarm_silence,
            "alarm_clear": self.alarm_clear, "queue": self.queue, "queue_purge": self.queue_purge, "poll": self.poll,
            "ports": self.ports, "set_log_level": self.set_log_level, "actuate": self.actuate,
            "operator_check_confirm": self.operator_check_confirm,
            "walk_start": self.walk_start, "walk_status": self.walk_status, "walk_stop": self.walk_stop,
            "logs": self.logs,
            "lora_listen": self.diagnostics.listen.listen,  # `gateway lora listen --seconds N`: waits, then reports
            # issue 23: `gateway test fire|power`, `selfcheck_run` (gateway/selfcheck/control.py)
            **(self.d.inspection.control_handlers() if getattr(self.d, "inspection", None) is not None else {}),
        }

    def downlink_handlers(self) -> dict[str, Handler]:
        """The platform's signed downlink commands (docs/uplink.md), through the same methods."""
        return {"ack_alarm": self.platform_ack, "silence": self.platform_silence, "poll_now": self.poll_now,
                "set_log_level": self.set_log_level,
                "config_apply": self.fleet.config_apply, "config_status": self.fleet.config_status,
                "update": self.update.update, "update_status": self.update.update_status,
                **self.diagnostics.handlers()}

    # ---- state ----------------------------------------------------------------------------------
    async def status(self, args: Args) -> dict[str, Any]:
        return self.d.status()

    async def devices(self, args: Args) -> list[dict[str, Any]]:
        rows = self.d.pipeline.live.rows(self.d.clock.monotonic()) if self.d.pipeline else []
        if args.get("type") is not None:
            kind = _str_arg(args, "type")
            rows = [r for r in rows if r["type"] == kind]
        if args.get("offline"):
            rows = [r for r in rows if r["state"] != "online"]
        return rows

    async def device(self, args: Args) -> dict[str, Any]:
        """One device in detail: the `devices` row, its recent frames and signal history, its alarms."""
        device_id = _str_arg(args, "device_id")
        if self.d.pipeline is None:
            raise CommandRejected("not_ready", "the daemon is still starting")
        live = self.d.pipeline.live
        if device_id not in live.devices:
            # A unique prefix is enough (`gateway devices nbsmoke-2-2-6`), as for alarm ids.
            matches = [d for d in live.devices if d.startswith(device_id)]
            if len(matches) != 1:
                more = f": {', '.join(sorted(matches)[:8])}" if matches else ""
                raise CommandRejected("unknown_device" if not matches else "ambiguous_device",
                                      f"{device_id!r} matches {len(matches)} devices in this gateway's config{more}")
            device_id = matches[0]
        out = live.row(device_id, self.d.clock.monotonic())
        out.update(live.history(device_id))
        dev = live.devices[device_id]
        out.update(address=dev.address, contacts=list(dev.contacts), building=dev.location.building,
                   unit=dev.location.unit, room=dev.location.room)
        alarms = await self.alarms({"since_s": 7 * 86400.0}) if self.d.rules is not None else []
        out["alarms"] = [a for a in alarms if a["device_id"] == device_id]
        return out

    def _silenced(self) -> set[str]:
        book = getattr(self.d.rules, "book", None)
        by_id = getattr(book, "by_id", {}) or {}
        return {alarm_id for alarm_id, act in by_id.items() if getattr(act, "silenced", False)}

    async def alarms(self, args: Args) -> list[dict[str, Any]]:
        if self.d.rules is None:
            return []
        if not isinstance(args.get("active", True), bool):
            raise CommandRejected("bad_args", "active must be true or false")
        if args.get("active", True) and "since_s" not in args:
            found = self.d.rules.active()
        else:
            found = self.d.rules.history(_num_arg(args, "since_s", 86400, 0, 366 * 86400))
        silenced = self._silenced()
        return [alarm_view(a, a.id in silenced) for a in found]

    # ---- alarm commands -------------------------------------------------------------------------
    def resolve_alarm(self, given: str) -> str:
        """An active alarm's id from its unique prefix (the CLI shows 16 hex digits; people type 6)."""
        ids: list[str] = [a.id for a in self.d.rules.active()]
        if given in ids:
            return given
        matches = [i for i in ids if i.startswith(given)]
        if len(matches) > 1:
            raise CommandRejected("ambiguous_alarm", f"{given!r} matches {len(matches)} active alarms: {', '.join(sorted(matches))}")
        if len(matches) == 1 and len(given) >= ALARM_PREFIX_MIN:
            return matches[0]
        if matches:
            raise CommandRejected("bad_args", f"give at least {ALARM_PREFIX_MIN} characters of the alarm id")
        return given  # unknown: the rule engine says so in its own words

    async def _alarm_op(self, name: str, args: Args, via: str) -> dict[str, Any]:
        if self.d.rules is None:
            raise CommandRejected("no_rule_engine", "this gateway runs no rules")
        alarm_id = self.resolve_alarm(_str_arg(args, "alarm_id"))
        by = _str_arg(args, "by") if "by" in args else via
        result = await getattr(self.d.rules, name)(alarm_id, f"{via}:{by}")
        return {"alarm_id": alarm_id, "result": result if isinstance(result, (str, dict, bool)) else "ok"}

    async def alarm_ack(self, args: Args) -> dict[str, Any]:
        return await self._alarm_op("ack", args, "cli")

    async def alarm_silence(self, args: Args) -> dict[str, Any]:
        return await self._alarm_op("silence", args, "cli")

    async def alarm_clear(self, args: Args) -> dict[str, Any]:
        return await self._alarm_op("clear", args, "cli")

    async def platform_ack(self, args: Args) -> dict[str, Any]:
        return await self._alarm_op("ack", args, "platform")

    async def platform_silence(self, args: Args) -> dict[str, Any]:
        return await self._alarm_op("silence", args, "platform")

    # ---- store, devices, actuators --------------------------------------------------------------
    async def queue(self, args: Args) -> dict[str, Any]:
        stats: dict[str, Any] = msgspec.to_builtins(self.d.outbox.stats())
        return stats

    async def queue_purge(self, args: Args) -> dict[str, Any]:
        older_than_s = _num_arg(args, "older_than_s", 7 * 86400, 0, 10 * 365 * 86400)
        purged = await self.d.outbox.purge_telemetry(older_than_s)
        return {"purged": purged, "class": "telemetry"}

    async def poll(self, args: Args) -> list[dict[str, Any]]:
        device_id = _str_arg(args, "device_id")
        return [msgspec.to_builtins(i) for i in await self.d.poll_device(device_id)]

    async def poll_now(self, args: Args) -> dict[str, Any]:
        return {"items": await self.poll(args)}

    async def ports(self, args: Args) -> list[dict[str, Any]]:
        # For the installer probes: which serial devices / hosts this daemon holds, so they can
        # refuse politely instead of fighting the driver for the bus.
        return [{"port": name, "driver": driver, "path": getattr(port, "path", None), "host": getattr(port, "host", None),
                 "tcp_port": getattr(port, "port", None), "running": name in self.d.drivers}
                for name, (driver, port) in self.d.cfg.ports.items()]

    async def set_log_level(self, args: Args) -> dict[str, Any]:
        level = _str_arg(args, "level", 10)
        if level not in LOG_LEVELS:
            raise CommandRejected("bad_args", f"level must be one of {', '.join(LOG_LEVELS)}")
        logsetup.set_level(level)
        return {"level": level}

    async def actuate(self, args: Args) -> dict[str, Any]:
        from gateway.model import Command

        cmd = Command(_str_arg(args, "device_id"), _str_arg(args, "target"), args.get("value"), reason="cli")
        await self.d.actuate(cmd)
        return {"device_id": cmd.device_id, "target": cmd.target, "value": cmd.value}

    async def operator_check_confirm(self, args: Args) -> dict[str, Any]:
        if self.d.gb26875 is None:
            raise CommandRejected("no_gb26875", "the GB/T 26875 uplink is not enabled on this gateway")
        by = _str_arg(args, "by")
        self.d.gb26875.confirm_operator_check(f"cli:{by}")
        return {"confirmed_by": f"cli:{by}"}

    async def logs(self, args: Args) -> list[dict[str, Any]]:
        """The daemon's recent log lines (already redacted), for `gateway logs` without journald."""
        after = int(_num_arg(args, "after_seq", 0, 0, 2**62))
        limit = int(_num_arg(args, "lines", 200, 0, logring.RING_LINES))
        return logring.RING.since(after, limit)

    # ---- walk test (gateway/commission/walk.py) -------------------------------------------------
    async def walk_start(self, args: Args) -> dict[str, Any]:
        if self.d.pipeline is None:
            raise CommandRejected("not_ready", "the daemon is still starting")
        now = self.d.clock.monotonic()
        if self.walk is not None and self.walk.active(now):
            raise CommandRejected("walk_running", "a walk test is already running: gateway commission walk --stop first")
        building = _str_arg(args, "building", 16) if args.get("building") is not None else None
        duration_s = _num_arg(args, "duration_s", DEFAULT_DURATION_S, 60, MAX_DURATION_S)
        by = _str_arg(args, "by") if "by" in args else "cli"
        session = WalkSession(self.d.devices, building, duration_s, now, self.d.clock.wall(), by, self._test_by_alarm())
        if not session.scope:
            raise CommandRejected("bad_args", f"no device in building {building!r}")
        self.walk = session
        self.d.pipeline.walk = session
        logsetup.get(stage="walk").info("walk_started", building=building, devices=len(session.scope), duration_s=duration_s, by=by)
        return self._walk_report()

    def _test_by_alarm(self) -> frozenset[str]:
        """Devices whose profile has no test event: their test (test valve, lifted cover) reports as an alarm."""
        profiles = getattr(self.d.cfg, "profiles", {}) or {}
        out = set()
        for dev_id, dev in self.d.devices.items():
            events = getattr(profiles.get(dev.profile), "events", None)
            if events is not None and not any(e == "test" or e.startswith("test/") for e in events):
                out.add(dev_id)
        return frozenset(out)

    async def walk_status(self, args: Args) -> dict[str, Any]:
        if self.walk is None:
            raise CommandRejected("no_walk", "no walk test has run since the daemon started: gateway commission walk")
        return self._walk_report()

    async def walk_stop(self, args: Args) -> dict[str, Any]:
        if self.walk is None:
            raise CommandRejected("no_walk", "no walk test is running")
        self.walk.end(self.d.clock.monotonic(), "stopped")
        return self._walk_report()

    def _walk_report(self) -> dict[str, Any]:
        assert self.walk is not None
        now = self.d.clock.monotonic()
        live = {r["id"]: r for r in self.d.pipeline.live.rows(now)} if self.d.pipeline else {}
        report = self.walk.report(now, live)
        if not report["active"] and self.d.pipeline is not None and self.d.pipeline.walk is self.walk:
            self.d.pipeline.walk = None  # ended (time up, all ticked or stopped): the pipeline stops asking
            logsetup.get(stage="walk").info("walk_ended", reason=report["end_reason"], done=report["done"], total=report["total"])
        return report
