"""Installer probes behind `gateway modem at PORT CMD` and `gateway modem info PORT` (daemon stopped):
one AT command with its answer lines, and the modem's identity, SIM, registration and signal."""

from __future__ import annotations

import contextlib
from typing import Any

import structlog

from drivers.cellular import status
from drivers.cellular.channel import AtChannel
from drivers.cellular.commands import Timeouts
from gateway.errors import GatewayError

log = structlog.get_logger("modem_probe")


async def _open(port: str, baud: int, timeout_s: float) -> AtChannel:
    ch = AtChannel(log, Timeouts(query_s=timeout_s, slow_s=max(timeout_s, 10.0), sms_s=max(timeout_s, 120.0)),
                   on_urc=lambda urc: None, on_reboot=lambda line: None)
    await ch.open(port, baud)
    return ch


async def at(port: str, command: str, baud: int = 9600, timeout_s: float = 5.0) -> list[str]:
    """Send COMMAND; the answer lines, then OK or the error as the modem's own words mean it."""
    ch = await _open(port, baud, timeout_s)
    try:
        lines = list(await ch.command(command, timeout_s=timeout_s))
        return [*lines, "OK"]
    except GatewayError as exc:
        return [f"error: {exc}"]
    finally:
        await ch.aclose()


async def _facts(ch: Any, st: status.ModemStatus, steps: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """Run each read-only query; one that fails shows its error instead of hiding the others."""
    problems: dict[str, str] = {}
    try:
        for name, step in steps:
            try:
                await step
            except GatewayError as exc:
                problems[name] = str(exc)
    finally:
        await ch.aclose()
    return {**st.as_dict(), **{f"error_{k}": v for k, v in problems.items()}}


async def info(port: str, baud: int = 9600) -> dict[str, Any]:
    """The NB-IoT modem's facts (BC95 dialect)."""
    ch = await _open(port, baud, 2.0)
    st = status.ModemStatus()
    try:
        # Numbered errors first (27.007 +CMEE=1): a missing SIM then reads "absent" (CME 10), not "failure".
        with contextlib.suppress(GatewayError):
            await ch.command("AT+CMEE=1")
    except BaseException:
        await ch.aclose()
        raise
    return await _facts(ch, st, (
        ("sim", status.read_sim(ch, st)), ("identity", status.read_identity(ch, st)),
        ("registration", status.read_registration(ch, st)), ("attach", status.read_attach(ch, st)),
        ("address", status.read_address(ch, st)), ("radio", status.read_radio(ch, st))))


async def ec200_info(port: str, baud: int) -> dict[str, Any]:
    """The Cat-1 SMS modem's facts with its own commands (AT+CGSN, AT+QCCID), never BC95's (AT+NCCID, AT+NUESTATS)."""
    ch = await _open(port, baud, 2.0)
    st = status.ModemStatus()
    return await _facts(ch, st, (
        ("sim", status.read_sim(ch, st)),
        ("identity", status.read_identity(ch, st, imei_cmd="AT+CGSN", iccid_cmd="AT+QCCID")),
        ("registration", status.read_registration(ch, st)), ("radio", status.read_radio(ch, st, nuestats=False))))
