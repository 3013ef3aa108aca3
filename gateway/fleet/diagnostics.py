"""Remote diagnostics over signed commands (issue 20), allow-listed: support_bundle, selftest,
logs_fetch, modbus_read, lora_listen (+ lora_listen_result; gateway/fleet/listen.py). No shell, no arbitrary command, no raw bus access: each reads what the
daemon already knows or asks a configured device through its own driver."""

from __future__ import annotations

import base64
import dataclasses
import json
import platform
import shutil
import sys
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

import gateway
from gateway.control import logring
from gateway.errors import CommandRejected
from gateway.fleet.listen import RadioListen
from gateway.fleet.runner import RUNTIME

if TYPE_CHECKING:
    from gateway.control.handlers import ControlApi

LOGS_MAX_BYTES = 32 * 1024  # base64 data per reply: well under the 64 KiB command/reply budget (docs/uplink.md)
RECENT_ALARMS = 20


def _int_arg(args: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CommandRejected("bad_args", f"{key} must be an integer in {lo}..{hi}")
    return value


class Diagnostics:
    def __init__(self, api: ControlApi) -> None:
        self.api = api
        self.listen = RadioListen(lambda: api.d.drivers, lambda: api.d.clock)  # one window per daemon, both doors

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
        return {"support_bundle": self.support_bundle, "selftest": self.selftest, "logs_fetch": self.logs_fetch,
                "modbus_read": self.modbus_read, "lora_listen": self.listen.start_remote,
                "lora_listen_result": self.listen.result}

    async def support_bundle(self, args: dict[str, Any]) -> dict[str, Any]:
        """The daemon's status (drivers, outbox, trouble, uplink) plus config, versions, disk and SD
        wear (bytes this process wrote, store.bytes_written) and the most recent alarms."""
        d = self.api.d
        status = d.status()
        store_dir = Path(d.cfg.store.path).parent
        try:
            du = shutil.disk_usage(store_dir)
            disk = {"path": str(store_dir), "total": du.total, "free": du.free}
        except OSError as exc:
            disk = {"path": str(store_dir), "error": str(exc)[:120]}
        alarms = await self.api.alarms({})
        return {
            "status": status,
            "config": RUNTIME.files.status_fields() if RUNTIME.files is not None else {},
            "versions": {"gateway": gateway.__version__, "python": sys.version.split()[0], "machine": platform.machine(),
                         "msgspec": msgspec.__version__},
            "disk": disk,
            "recent_alarms": alarms[-RECENT_ALARMS:],
        }

    async def selftest(self, args: dict[str, Any]) -> dict[str, Any]:
        """`gateway selftest`'s checks that read the daemon's state (daemon, faults, devices, clock,
        disk). Skipped remotely: ports (would fight the drivers for the bus) and the broker TLS probe
        (the uplink answering this command is that probe)."""
        from gateway.cli import checks

        d = self.api.d
        env = checks.Env(config_path=str(RUNTIME.files.config) if RUNTIME.files else "", cfg=d.cfg, status=d.status(),
                         devices=await self.api.devices({}), ports=await self.api.ports({}))
        results = []
        for check in (checks.check_daemon, checks.check_trouble, checks.check_devices, checks.check_clock, checks.check_disk):
            results += [dataclasses.asdict(c) for c in check(env)]
        failed = [c["name"] for c in results if c["status"] == "fail"]
        return {"ok": not failed, "failed": failed, "checks": results}

    async def logs_fetch(self, args: dict[str, Any]) -> dict[str, Any]:
        """Log lines after `after_seq` (and at or after ISO `since`, if given), newline-delimited JSON,
        zlib-compressed, base64, at most `max_bytes` of data. Call again with `after_seq` = `next_seq`
        while `more` is true: that is the chunking."""
        after = _int_arg(args, "after_seq", 0, 0, 2**62)
        max_bytes = _int_arg(args, "max_bytes", LOGS_MAX_BYTES, 1024, LOGS_MAX_BYTES)
        since = args.get("since", "")
        if not isinstance(since, str) or len(since) > 40:
            raise CommandRejected("bad_args", "since must be an ISO-8601 UTC timestamp string")
        lines = [ln for ln in logring.RING.since(after, logring.RING_LINES) if not since or str(ln.get("timestamp", "")) >= since]
        n = len(lines)
        while True:
            data = base64.b64encode(zlib.compress("\n".join(json.dumps(ln, ensure_ascii=False, default=str) for ln in lines[:n]).encode(), 6))
            if len(data) <= max_bytes or n <= 1:
                break
            n = max(1, n * max_bytes // len(data) * 9 // 10)  # shrink towards the budget (zlib is near linear)
        sent = lines[:n] if len(data) <= max_bytes else []
        if not sent:  # a single line larger than the budget: skip it rather than loop forever
            data = b""
        next_seq = sent[-1]["_seq"] if sent else (lines[0]["_seq"] if lines else after)
        return {"encoding": "ndjson+zlib+base64", "data": data.decode(), "lines": len(sent), "next_seq": next_seq,
                "more": len(lines) > len(sent)}

    async def modbus_read(self, args: dict[str, Any]) -> dict[str, Any]:
        """Read one configured Modbus device now, through its driver (its register map, its queue)."""
        from drivers.modbus.driver import ModbusDriver

        device_id = args.get("device_id")
        if not isinstance(device_id, str) or not device_id or len(device_id) > 64:
            raise CommandRejected("bad_args", "device_id must be a non-empty string of at most 64 characters")
        if not isinstance(self.api.d.driver_of(device_id), ModbusDriver):
            raise CommandRejected("not_modbus", f"{device_id} is not on a Modbus port")
        items = await self.api.d.poll_device(device_id)
        return {"device_id": device_id, "items": [msgspec.to_builtins(i) for i in items]}
