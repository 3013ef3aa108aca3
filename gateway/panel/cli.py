"""`gateway panel ...`: run the web panel, make a PIN hash, print the walk test's one-time code."""

from __future__ import annotations

import asyncio
import secrets
import sys

import click

from gateway.cli.common import EXIT_FAIL, EXIT_UNAVAILABLE


@click.group()
def panel() -> None:
    """The local web panel for the guard room and the installer (docs/panel.md)."""


@panel.command("run")
@click.option("--config", "config_path", default="/etc/courtyard-gateway/gateway.toml", show_default=True)
def run(config_path: str) -> None:
    """Serve the panel on the [panel] LAN address until stopped."""
    from gateway import log as logsetup
    from gateway.errors import ConfigError
    from gateway.panel.serve import serve

    logsetup.setup("info", "auto")
    try:
        asyncio.run(serve(config_path))
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        sys.exit(EXIT_FAIL)
    except KeyboardInterrupt:
        pass


@panel.command("hash-pin")
def hash_pin_command() -> None:
    """Read a guard PIN (4-12 digits) twice and print the credentials-file lines for it."""
    from gateway.panel.security import hash_pin

    pin = click.prompt("guard PIN", hide_input=True, confirmation_prompt=True)
    try:
        click.echo(f'panel_pin_hash = "{hash_pin(pin)}"')
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f'panel_code_key = "{secrets.token_hex(32)}"  # only if the file has none yet')


@panel.command("code")
@click.option("--config", "config_path", default="/etc/courtyard-gateway/gateway.toml", show_default=True)
def code(config_path: str) -> None:
    """Print the one-time code that opens the installer view for the walk test now running."""
    from gateway.config import load_config, load_credentials
    from gateway.control.client import DaemonUnavailable, call
    from gateway.panel.security import walk_code

    cfg = load_config(config_path)
    key = load_credentials(cfg.uplink.credentials_file).panel_code_key if cfg.uplink.credentials_file else ""
    if not key:
        raise click.ClickException("no panel_code_key in the credentials file (gateway panel hash-pin prints one)")
    try:
        reply = call(cfg.control.socket, "walk_status")
    except DaemonUnavailable as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_UNAVAILABLE)
    if not reply.ok or not reply.result.get("active"):
        raise click.ClickException("no walk test is running: gateway commission walk")
    click.echo(walk_code(key, reply.result["started_wall"]))
