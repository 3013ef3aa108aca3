"""Thin wrappers around the service: `gateway logs` (journalctl for the unit, else the daemon's own ring) and `gateway provision`
(owned by gateway/provision/, shared with the first-boot script)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any

import click

from gateway.cli.common import Target, Unreachable, ask, target_options
from gateway.control.client import DaemonUnavailable

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


def journald_has_lines(unit: str) -> bool:
    """Whether journald holds anything for the unit (a foreground or container daemon logs elsewhere)."""
    exe = shutil.which("journalctl")
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "-u", unit, "-n", "1", "-q", "--no-pager", "-o", "cat"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def _line_text(doc: dict[str, Any]) -> str:
    rest = " ".join(f"{k}={v}" for k, v in doc.items() if k not in ("_seq", "event", "level", "timestamp", "gateway_id"))
    return f"{doc.get('timestamp', '')} {doc.get('level', '')} {doc.get('event', '')} {rest}".strip()


def _from_daemon(target: Target, follow: bool, lines: int, as_json: bool) -> None:
    """The daemon's in-memory ring over the control socket (gateway/control/logring.py)."""
    got = ask(target, "logs", {"lines": min(lines, 1000)})
    last = 0
    while True:
        for doc in got:
            last = max(last, int(doc.get("_seq", 0)))
            click.echo(json.dumps({k: v for k, v in doc.items() if k != "_seq"}, ensure_ascii=False) if as_json else _line_text(doc))
        if not follow:
            return
        time.sleep(1.0)
        got = ask(target, "logs", {"after_seq": last, "lines": 1000})


@click.command()
@click.option("--follow", "-f", is_flag=True, help="keep printing new lines (Ctrl-C to stop)")
@click.option("--lines", "-n", type=click.IntRange(0, 1_000_000), default=200, show_default=True)
@click.option("--since", help='journalctl time, e.g. "1 hour ago", "today", "2024-05-01 03:00"')
@click.option("--json", "as_json", is_flag=True, help="the daemon's JSON lines only")
@click.option("--unit", default=UNIT, show_default=True, hidden=True)
@target_options
def logs(target: Target, follow: bool, lines: int, since: str | None, as_json: bool, unit: str) -> None:
    """The daemon's log: journalctl -u courtyard-gateway; when journald has nothing for it (daemon run
    in the foreground, no systemd), the daemon's own last lines over the control socket."""
    if journald_has_lines(unit):
        argv = journalctl_argv(follow, lines, since, as_json, unit)
        # exec: journalctl owns the terminal (pager keys, Ctrl-C) and its exit code becomes ours.
        os.execv(argv[0], argv)
    try:
        _from_daemon(target, follow, lines, as_json)
    except KeyboardInterrupt:
        pass
    except DaemonUnavailable as exc:
        raise Unreachable(f"journald has no lines for {unit} and the daemon does not answer ({exc})") from None


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
