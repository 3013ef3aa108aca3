"""`gateway alarms`: active alarms or recent history, and acknowledge / silence / clear one."""

from __future__ import annotations

import getpass
import os
from typing import Any

import click

from gateway.cli import render
from gateway.cli.common import Target, ask, json_option, target_options
from gateway.model import Severity

ALARM_COLUMNS: list[render.Column] = [
    # 8 hex digits identify an alarm in practice; any unique prefix of 4+ is accepted by ack/silence/clear.
    ("ID", lambda a: a["id"][:8]),
    ("SEVERITY", lambda a: a.get("severity_name") or _severity(a.get("severity"))),
    ("STATE", lambda a: a.get("display_state") or a.get("state")),
    ("DEVICE", lambda a: a.get("device_id")),
    ("TITLE", lambda a: a.get("title")),
    ("RAISED", lambda a: render.wall(a.get("raised_wall_s") or (a.get("raised") or [None])[0])),
    ("REPEATS", lambda a: a.get("repeats") or None),
    ("ACK BY", lambda a: a.get("acknowledged_by")),
]


def _severity(value: Any) -> str:
    try:
        return Severity(value).name.lower()
    except ValueError:
        return str(value)


def operator() -> str:
    """Who is at the keyboard: the sudo caller rather than 'root', for the alarm's audit trail."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


@click.group(invoke_without_command=True)
@click.option("--active", "active", is_flag=True, help="active alarms (the default)")
@click.option("--since", "since_s", type=render.Duration(), metavar="DURATION", help="history, e.g. 24h, 7d")
@target_options
@json_option
@click.pass_context
def alarms(ctx: click.Context, target: Target, active: bool, since_s: float | None, as_json: bool) -> None:
    """Active alarms, or every alarm raised --since DURATION. Subcommands act on one."""
    if ctx.invoked_subcommand is not None:
        return
    if active and since_s is not None:
        raise click.UsageError("give --active or --since, not both")
    args: dict[str, Any] = {"active": True} if since_s is None else {"since_s": since_s}
    rows = ask(target, "alarms", args)
    if as_json:
        render.emit_json(rows)
        return
    if not rows:
        click.echo("no active alarms" if since_s is None else f"no alarms in the last {render.age(since_s)}")
        return
    click.echo(render.table(rows, ALARM_COLUMNS, 80))


def _operation(name: str, cmd: str, verb: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("alarm_id", metavar="ALARM_ID_OR_PREFIX")
    @target_options
    @json_option
    def op(target: Target, alarm_id: str, as_json: bool) -> None:
        result = ask(target, cmd, {"alarm_id": alarm_id, "by": operator()})
        if as_json:
            render.emit_json(result)
        else:
            click.echo(f"{result.get('alarm_id', alarm_id)}: {verb} by {operator()}")

    return op


alarms.add_command(_operation("ack", "alarm_ack", "acknowledged", "Acknowledge ALARM_ID: stops escalation and the sounder."))
alarms.add_command(_operation("silence", "alarm_silence", "silenced", "Silence the sounder for ALARM_ID (the alarm stays active)."))
alarms.add_command(_operation("clear", "alarm_clear", "cleared", "Clear ALARM_ID once its cause is fixed."))
