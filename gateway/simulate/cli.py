"""`gateway simulate`: the simulated courtyard (`--courtyard FILE`), one protocol's simulator
(`gateway simulate modbus ...`), and live scenario triggers (`gateway simulate trigger smoke`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from gateway.simulate.courtyard import Courtyard


def default_trigger_socket() -> str:
    return os.environ.get("COURTYARD_SIM_SOCKET", f"/tmp/courtyard-sim-{os.getuid()}.sock")


def _need_sim_extra() -> None:
    """The simulators' libraries are the [sim] extra (pyproject.toml): a Pi in service does not carry them."""
    import importlib.util

    missing = [m for m in ("pymodbus",) if importlib.util.find_spec(m) is None]
    if missing:
        raise click.ClickException(f"the simulators need {', '.join(missing)}: pip install 'courtyard-gateway[sim]'")


class _Group(click.Group):
    """Subcommands are the per-protocol simulators, imported only when used."""

    LAZY = {
        "modbus": ("drivers.modbus.simulator", "cli"),
        "lora": ("drivers.lora.simulator", "cli"),
        "lorawan": ("drivers.lorawan.simulator", "cli"),
        "nbiot": ("drivers.cellular.simulator", "cli_nbiot"),
        "sms-modem": ("drivers.cellular.simulator", "cli_sms"),
        "gb26875-centre": ("gateway.uplink.gb26875.simulator", "cli"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*self.LAZY, *super().list_commands(ctx)])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            import importlib

            module, attr = self.LAZY[name]
            _need_sim_extra()
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


@click.group("simulate", cls=_Group, invoke_without_command=True)
@click.option("--courtyard", type=click.Path(exists=True, dir_okay=False), help="courtyard description (config/demo/courtyard.toml)")
@click.option("--gateway-config", "out", type=click.Path(dir_okay=False), help="where to write the matching gateway config")
@click.option("--broker", default="mqtt://127.0.0.1:1883", show_default=True, help="the platform's broker the uplink should reach")
@click.option("--time-scale", type=click.FloatRange(min=1.0), default=1.0, show_default=True, help="compress sensors' heartbeat periods by this factor")
@click.option("--trigger-socket", default=default_trigger_socket, show_default="$COURTYARD_SIM_SOCKET or /tmp/courtyard-sim-UID.sock")
@click.pass_context
def simulate(ctx: click.Context, courtyard: str | None, out: str | None, broker: str, time_scale: float, trigger_socket: str) -> None:
    """Run the simulated courtyard, or one protocol's simulator (see COMMANDS)."""
    if ctx.invoked_subcommand is not None:
        return
    if not courtyard or not out:
        raise click.UsageError("give --courtyard FILE and --gateway-config OUT.toml, or a simulator command")
    _need_sim_extra()
    from gateway.simulate.courtyard import Courtyard, load

    cy = Courtyard(load(Path(courtyard)), Path(courtyard), Path(out), broker, time_scale)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await cy.start()
        server = await asyncio.start_unix_server(lambda r, w: _serve_trigger(cy, r, w), path=trigger_socket)
        click.echo(f"simulated courtyard {cy.spec.gateway_id}: gateway config {out}; triggers on {trigger_socket}", err=True)
        click.echo("ready", err=True)
        try:
            await stop.wait()
        finally:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(trigger_socket)
            await cy.stop()

    asyncio.run(main())


async def _serve_trigger(cy: Courtyard, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await reader.readline()
        req = json.loads(line)
        result = await cy.trigger(str(req.get("scenario", "")), str(req.get("device", "")), float(req.get("duration_s", 10.0)))
        writer.write(json.dumps({"ok": True, **result}, ensure_ascii=False).encode() + b"\n")
    except (ValueError, KeyError, TypeError) as exc:
        usage = isinstance(exc, KeyError) or str(exc).startswith("unknown scenario")
        writer.write(json.dumps({"ok": False, "error": str(exc), "usage": usage}, ensure_ascii=False).encode() + b"\n")
    finally:
        await writer.drain()
        writer.close()


@simulate.command("trigger")
@click.argument("scenario")
@click.argument("device", required=False, default="")
@click.option("--duration", "duration_s", type=float, default=10.0, show_default=True, help="for silent / uplink_outage")
@click.option("--socket", "sock", default=default_trigger_socket)
def trigger(scenario: str, device: str, duration_s: float, sock: str) -> None:
    """Trigger SCENARIO (smoke, gas, hydrant_opened, pump_fault, manhole_tilted, water_flow, leak, door_open,
    battery_low, silent, clear, uplink_outage, test_button) on DEVICE, or on a device of the right type. Exit 2 for an
    unknown scenario or device."""
    import socket as s

    try:
        with s.socket(s.AF_UNIX) as c:
            c.settimeout(10)
            c.connect(sock)
            c.sendall(json.dumps({"scenario": scenario, "device": device, "duration_s": duration_s}).encode() + b"\n")
            reply = json.loads(c.makefile().readline())
    except OSError as exc:
        click.echo(f"no simulated courtyard on {sock}: {exc}", err=True)
        sys.exit(3)
    if not reply.get("ok"):
        click.echo(f"refused: {reply.get('error')}", err=True)
        # An unknown scenario or device is a usage error (exit 2, docs/CLI.md); a known one that does
        # not apply to the device is a refusal (1).
        sys.exit(2 if reply.get("usage") else 1)
    click.echo(" ".join(f"{k}={v}" for k, v in reply.items() if k != "ok"))
