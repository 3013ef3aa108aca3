"""What the control socket can ask of the running daemon. One function per command, arguments
validated here (the socket is input like any other)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway import log as logsetup
from gateway.errors import CommandRejected

if TYPE_CHECKING:
    from gateway.daemon import Daemon

LOG_LEVELS = ("debug", "info", "warning", "error")
MUTATING = {"alarm_ack", "alarm_silence", "alarm_clear", "queue_purge", "poll", "set_log_level", "actuate", "operator_check_confirm"}


def _str_arg(args: dict[str, Any], key: str, max_len: int = 64) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise CommandRejected("bad_args", f"{key} must be a non-empty string of at most {max_len} characters")
    return value


def _num_arg(args: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise CommandRejected("bad_args", f"{key} must be a number in {lo:g}..{hi:g}")
    return float(value)


def build(d: Daemon) -> dict[str, Any]:
    async def status(args: dict[str, Any]) -> dict[str, Any]:
        return d.status()

    async def devices(args: dict[str, Any]) -> list[dict[str, Any]]:
        rows = d.pipeline.live.rows(d.clock.monotonic()) if d.pipeline else []
        kind = args.get("type")
        if kind is not None:
            rows = [r for r in rows if r["type"] == _str_arg(args, "type")]
        if args.get("offline"):
            rows = [r for r in rows if r["state"] != "online"]
        return rows

    async def alarms(args: dict[str, Any]) -> list[dict[str, Any]]:
        if d.rules is None:
            return []
        import msgspec

        if not isinstance(args.get("active", True), bool):
            raise CommandRejected("bad_args", "active must be true or false")
        if args.get("active", True) and "since_s" not in args:
            return [msgspec.to_builtins(a) for a in d.rules.active()]
        since_s = _num_arg(args, "since_s", 86400, 0, 366 * 86400)
        return [msgspec.to_builtins(a) for a in d.rules.history(since_s)]

    def _alarm_op(name: str, via: str = "cli"):
        async def op(args: dict[str, Any]) -> dict[str, Any]:
            if d.rules is None:
                raise CommandRejected("no_rule_engine", "this gateway runs no rules")
            alarm_id = _str_arg(args, "alarm_id")
            by = _str_arg(args, "by") if "by" in args else via
            result = await getattr(d.rules, name)(alarm_id, f"{via}:{by}")
            return {"alarm_id": alarm_id, "result": result if isinstance(result, (str, dict, bool)) else "ok"}

        return op

    async def queue(args: dict[str, Any]) -> dict[str, Any]:
        import msgspec

        return msgspec.to_builtins(d.outbox.stats())

    async def queue_purge(args: dict[str, Any]) -> dict[str, Any]:
        older_than_s = _num_arg(args, "older_than_s", 7 * 86400, 0, 10 * 365 * 86400)
        purged = await d.outbox.purge_telemetry(older_than_s)
        return {"purged": purged, "class": "telemetry"}

    async def poll(args: dict[str, Any]) -> list[dict[str, Any]]:
        import msgspec

        device_id = _str_arg(args, "device_id")
        return [msgspec.to_builtins(i) for i in await d.poll_device(device_id)]

    async def ports(args: dict[str, Any]) -> list[dict[str, Any]]:
        # For the installer probes: which serial devices / hosts this daemon holds, so they can
        # refuse politely instead of fighting the driver for the bus.
        out = []
        for name, (driver, port) in d.cfg.ports.items():
            out.append({"port": name, "driver": driver, "path": getattr(port, "path", None),
                        "host": getattr(port, "host", None), "running": name in d.drivers})
        return out

    async def set_log_level(args: dict[str, Any]) -> dict[str, Any]:
        level = _str_arg(args, "level", 10)
        if level not in LOG_LEVELS:
            raise CommandRejected("bad_args", f"level must be one of {', '.join(LOG_LEVELS)}")
        logsetup.set_level(level)
        return {"level": level}

    async def actuate(args: dict[str, Any]) -> dict[str, Any]:
        from gateway.model import Command

        cmd = Command(_str_arg(args, "device_id"), _str_arg(args, "target"), args.get("value"), reason="cli")
        await d.actuate(cmd)
        return {"device_id": cmd.device_id, "target": cmd.target, "value": cmd.value}

    async def operator_check_confirm(args: dict[str, Any]) -> dict[str, Any]:
        if d.gb26875 is None:
            raise CommandRejected("no_gb26875", "the GB/T 26875 uplink is not enabled on this gateway")
        by = _str_arg(args, "by")
        d.gb26875.confirm_operator_check(f"cli:{by}")
        return {"confirmed_by": f"cli:{by}"}

    return {
        "operator_check_confirm": operator_check_confirm,
        "status": status,
        "devices": devices,
        "alarms": alarms,
        "alarm_ack": _alarm_op("ack"),
        "alarm_silence": _alarm_op("silence"),
        # The same operations for the platform's signed downlink commands (gateway/daemon.py).
        "platform_ack": _alarm_op("ack", via="platform"),
        "platform_silence": _alarm_op("silence", via="platform"),
        "alarm_clear": _alarm_op("clear"),
        "queue": queue,
        "queue_purge": queue_purge,
        "poll": poll,
        "ports": ports,
        "set_log_level": set_log_level,
        "actuate": actuate,
    }
