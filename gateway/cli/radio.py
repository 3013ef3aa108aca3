"""Installer probes for the radios: `gateway lora listen` (frames with RSSI as they arrive) and
`gateway modem at|info`. Thin wrappers: the protocol work lives in drivers/lora and drivers/cellular
(`probe` modules); a build without them says so instead of failing obscurely."""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable
from typing import Any

import click

from gateway.cli import render
from gateway.cli.common import Target, json_option, target_options
from gateway.cli.probes import ensure_port_free


def probe_function(module: str, name: str, what: str) -> Callable[..., Any]:
    """The driver package's installer probe, or a clear 'not available in this build'."""
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise click.ClickException(f"{what} is not available in this build ({module}.{name} is missing)") from None
    return fn


def _builtins(obj: Any) -> Any:
    import msgspec

    return obj if isinstance(obj, dict) else msgspec.to_builtins(obj)


@click.group()
def lora() -> None:
    """LoRa (Ebyte E22) installer probes (daemon stopped)."""


@lora.command()
@click.argument("port")
@click.option("--seconds", type=click.FloatRange(1, 3600), default=60, show_default=True, help="how long to listen")
@click.option("--baud", type=int, default=9600, show_default=True)
@target_options
@json_option
def listen(target: Target, port: str, seconds: float, baud: int, as_json: bool) -> None:
    """Print each decoded frame with its RSSI as it arrives, for --seconds."""
    listen_fn = probe_function("drivers.lora.probe", "listen", "gateway lora listen")
    ensure_port_free(target, port)
    frames: list[dict[str, Any]] = []

    async def main() -> None:
        async def consume() -> None:
            async for frame in listen_fn(port, baud=baud):
                f = _builtins(frame)
                frames.append(f)
                if as_json:
                    render.emit_json(f)
                else:
                    rest = {k: v for k, v in f.items() if k not in ("device_id", "rssi_dbm")}
                    click.echo(f"{time.strftime('%H:%M:%S')}  {f.get('device_id', '?')}  "
                               f"rssi {f.get('rssi_dbm', '-')}  {render.values(rest, 8)}")

        try:
            await asyncio.wait_for(consume(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    if not as_json:
        click.echo(f"listening on {port} for {seconds:g} s (Ctrl-C to stop)...", err=True)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    click.echo(f"{len(frames)} frames heard", err=True)


@click.group()
def modem() -> None:
    """Cellular modem installer probes (daemon stopped)."""


@modem.command("at")
@click.argument("port")
@click.argument("command")
@click.option("--baud", type=int, default=9600, show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(0.1, 180), default=5.0, show_default=True)
@target_options
@json_option
def at_command(target: Target, port: str, command: str, baud: int, timeout_s: float, as_json: bool) -> None:
    """Send one AT COMMAND (e.g. "AT+CSQ") and print the answer lines."""
    at_fn = probe_function("drivers.cellular.probe", "at", "gateway modem at")
    if not command.upper().startswith("AT"):
        raise click.BadParameter(f"{command!r} does not start with AT", param_hint="COMMAND")
    ensure_port_free(target, port)
    lines = asyncio.run(at_fn(port, command, baud=baud, timeout_s=timeout_s))
    if as_json:
        render.emit_json({"command": command, "lines": list(lines)})
    else:
        for line in lines:
            click.echo(line)


@modem.command()
@click.argument("port")
@click.option("--baud", type=int, default=9600, show_default=True)
@target_options
@json_option
def info(target: Target, port: str, baud: int, as_json: bool) -> None:
    """Registration, signal, ICCID, IMEI of the modem on PORT."""
    info_fn = probe_function("drivers.cellular.probe", "info", "gateway modem info")
    ensure_port_free(target, port)
    facts = _builtins(asyncio.run(info_fn(port, baud=baud)))
    if as_json:
        render.emit_json(facts)
    else:
        width = max((len(k) for k in facts), default=0)
        for key, value in facts.items():
            click.echo(f"{key.ljust(width)}  {value}")
