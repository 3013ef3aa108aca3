"""`gateway` click group. Subcommands import their machinery lazily so `gateway --version` stays instant."""

from __future__ import annotations

import sys

import click

import gateway
from gateway.errors import ConfigError

# Exit codes (documented in README "Exit codes").
EXIT_OK = 0
EXIT_FAIL = 1  # a check failed / config invalid
EXIT_USAGE = 2  # click's own usage errors
EXIT_UNAVAILABLE = 3  # daemon or device not reachable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(gateway.__version__, "--version", "-V", prog_name="courtyard-gateway")
def cli() -> None:
    """Courtyard fire-safety gateway: run the daemon, check config, inspect and commission."""


@cli.group()
def config() -> None:
    """Configuration tools."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate FILE and print OK, or every error found (exit 1)."""
    from gateway.config import load_config

    try:
        cfg = load_config(file)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo(f"{len(exc.problems)} error(s) in {file}", err=True)
        sys.exit(EXIT_FAIL)
    click.echo(f"OK: {file}: gateway {cfg.identity.gateway_id}, {len(cfg.ports)} ports, {len(cfg.devices)} devices, {len(cfg.rules)} rules")


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="gateway TOML file")
@click.option("--state-dir", type=click.Path(file_okay=False), help="override the directory of store.path")
@click.option("--runtime-dir", type=click.Path(file_okay=False), help="override the directory of control.socket")
def run(config_path: str, state_dir: str | None, runtime_dir: str | None) -> None:
    """Run the daemon until SIGTERM/SIGINT (systemd Type=notify)."""
    from gateway import daemon

    try:
        code = daemon.run(config_path, state_dir, runtime_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo("refusing to start", err=True)
        sys.exit(EXIT_FAIL)
    sys.exit(code)


def main() -> None:  # pragma: no cover - console entry point alias
    cli()
