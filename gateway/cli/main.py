"""`gateway` click group. Subcommands import their machinery lazily so `gateway --version` stays instant."""

from __future__ import annotations

import sys
from typing import Any

import click

import gateway
from gateway.cli.common import EXIT_FAIL, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE  # noqa: F401 - exit codes, docs/CLI.md
from gateway.errors import ConfigError


class GatewayGroup(click.Group):
    """Turns the gateway's own errors into one line on stderr and a meaningful exit code, so a
    maintainer never reads a traceback for "the daemon is not running"; loads subcommands lazily
    from LAZY_COMMANDS."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            self.add_command(_load(LAZY_COMMANDS[cmd_name]), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:  # click.Group.invoke returns the callback's result: Any
        from gateway.cli.common import DaemonRefused, Unreachable
        from gateway.control.client import DaemonUnavailable
        from gateway.errors import DeviceTimeout, GatewayError

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(problem, err=True)
            sys.exit(EXIT_FAIL)
        except DaemonUnavailable as exc:
            # Outside the service's group the daemon may well be running: "start it" would mislead (issue 18).
            from gateway.cli.status import GROUP_HINT

            hint = GROUP_HINT if "permission denied" in str(exc) else "start it with `sudo systemctl start courtyard-gateway`"
            click.echo(f"{exc}: {hint}", err=True)
            sys.exit(EXIT_UNAVAILABLE)
        except DaemonRefused as exc:
            click.echo(f"refused: {exc.error}" + (f": {exc.detail}" if exc.detail else ""), err=True)
            sys.exit(EXIT_FAIL)
        except (Unreachable, DeviceTimeout) as exc:
            click.echo(str(exc), err=True)
            sys.exit(EXIT_UNAVAILABLE)
        except GatewayError as exc:
            click.echo(f"{type(exc).__name__}: {exc}", err=True)
            sys.exit(EXIT_FAIL)


def _load(target: str) -> click.Command:
    import importlib

    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(module), attr.removesuffix("()"))
    command = obj() if attr.endswith("()") else obj
    assert isinstance(command, click.Command), target
    return command


@click.group(cls=GatewayGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    from gateway.config.check import uplink_warnings

    for warning in uplink_warnings(cfg.uplink, file):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"OK: {file}: gateway {cfg.identity.gateway_id}, {len(cfg.ports)} ports, {len(cfg.devices)} devices, {len(cfg.rules)} rules")


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="gateway TOML file")
@click.option("--state-dir", type=click.Path(file_okay=False), help="override the directory of store.path")
@click.option("--runtime-dir", type=click.Path(file_okay=False), help="override the directory of control.socket")
def run(config_path: str, state_dir: str | None, runtime_dir: str | None) -> None:
    """Run the daemon until SIGTERM/SIGINT (systemd Type=notify)."""
    from gateway.fleet import runner

    try:
        # runner: a pending config_apply is committed or rolled back around daemon.run (docs/fleet.md)
        code = runner.run(config_path, state_dir, runtime_dir)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo("refusing to start", err=True)
        sys.exit(EXIT_FAIL)
    sys.exit(code)


# Explicit list, like the driver registry: what `gateway --help` shows is what is here. Each command's
# module is imported only when that command runs (or --help lists it), so the daemon (`gateway run`)
# never loads the CLI's, the platform's, the simulators' or provisioning's machinery (issue 17: RSS).
LAZY_COMMANDS: dict[str, str] = {
    "status": "gateway.cli.status:status",
    "devices": "gateway.cli.devices:devices",
    "poll": "gateway.cli.devices:poll",
    "alarms": "gateway.cli.alarms:alarms",
    "queue": "gateway.cli.queue:queue",
    "modbus": "gateway.cli.probes:modbus",
    "lora": "gateway.cli.radio:lora",
    "modem": "gateway.cli.radio:modem",
    "selftest": "gateway.cli.selftest:selftest",
    "provision": "gateway.cli.service:provision_command()",
    "logs": "gateway.cli.service:logs",
    "simulate": "gateway.simulate.cli:simulate",
    "operator-check": "gateway.cli.operator_check:operator_check",
    "commission": "gateway.cli.commission:commission",
    "lorawan": "gateway.cli.lorawan:lorawan",
    "fleet": "gateway.cli.fleet:fleet",
    "platform": "gateway.platform.cli:platform",
    "residents": "gateway.cli.residents:residents",  # issue 22: away mode per flat
    "panel": "gateway.panel.cli:panel",  # the local web panel (issue 24), its own process
    "test": "gateway.cli.inspection:test",  # issue 23: gateway test fire|power
    "tests": "gateway.cli.inspection:tests",  # issue 23: gateway tests --since
}


def main() -> None:  # pragma: no cover - console entry point alias
    cli()
