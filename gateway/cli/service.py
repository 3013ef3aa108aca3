"""Thin wrappers around the service: `gateway logs` (journalctl for the unit) and `gateway provision`
(owned by gateway/provision/, shared with the first-boot script)."""

from __future__ import annotations

import os
import shutil

import click

from gateway.cli.common import Unreachable

UNIT = "courtyard-gateway"


def journalctl_argv(follow: bool, lines: int, since: str | None, as_json: bool, unit: str = UNIT) -> list[str]:
    exe = shutil.which("journalctl")
    if exe is None:
        raise Unreachable("journalctl is not installed: the daemon logs to journald (systemd) on a gateway")
    argv = [exe, "-u", unit, "--no-pager", "-n", str(lines)]
    if since:
        argv += ["--since", since]
    if follow:
        argv.append("--follow")
    if as_json:
        argv += ["-o", "cat"]  # the daemon writes one JSON object per line; print just those
    return argv


@click.command()
@click.option("--follow", "-f", is_flag=True, help="keep printing new lines (Ctrl-C to stop)")
@click.option("--lines", "-n", type=click.IntRange(0, 1_000_000), default=200, show_default=True)
@click.option("--since", help='journalctl time, e.g. "1 hour ago", "today", "2024-05-01 03:00"')
@click.option("--json", "as_json", is_flag=True, help="the daemon's JSON lines only")
@click.option("--unit", default=UNIT, show_default=True, hidden=True)
def logs(follow: bool, lines: int, since: str | None, as_json: bool, unit: str) -> None:
    """The daemon's log (journalctl -u courtyard-gateway)."""
    argv = journalctl_argv(follow, lines, since, as_json, unit)
    # exec: journalctl owns the terminal (pager keys, Ctrl-C) and its exit code becomes ours.
    os.execv(argv[0], argv)


def provision_command() -> click.Command:
    """The deployment side owns `gateway provision` (gateway/provision/command.py); mounted here as is."""
    try:
        from gateway.provision.command import command
    except ImportError:
        return _provision_missing
    return command


@click.command("provision", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def _provision_missing(args: tuple[str, ...]) -> None:
    """Provisioning (not available in this build)."""
    raise click.ClickException("provisioning is not available in this build (gateway/provision is missing)")
