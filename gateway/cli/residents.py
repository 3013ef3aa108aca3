"""`gateway residents`: the flats watched by inactivity rules (issue 22), and away mode per flat
(`gateway residents away 2-1-401 --until 2026-12-08`, `gateway residents back 2-1-401`)."""

from __future__ import annotations

import datetime
from typing import Any

import click

from gateway.cli import render
from gateway.cli.alarms import operator
from gateway.cli.common import Target, ask, json_option, target_options

COLUMNS: list[render.Column] = [
    ("FLAT", lambda r: r["flat"]),
    ("AWAY UNTIL", lambda r: render.wall(r.get("away_until_wall_s")) if r.get("away_until_wall_s") else None),
    ("QUIET", lambda r: f"{r['quiet_h']} h"),
    ("LAST ACTIVITY", lambda r: r.get("last_activity")),
    ("ALARM", lambda r: "welfare" if r.get("welfare_alarm") else None),
    ("DEVICES", lambda r: ", ".join(r.get("devices", []))),
]


def parse_until(text: str) -> float:
    """A local date or date-time: "2026-12-08" means until the end of that day; "2026-12-08T18:00" exactly."""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: give a date like 2026-12-08 or 2026-12-08T18:00") from None
    if len(text) == 10:
        when += datetime.timedelta(days=1)
    return when.timestamp()  # naive: the gateway's local time zone


@click.group(invoke_without_command=True)
@target_options
@json_option
@click.pass_context
def residents(ctx: click.Context, target: Target, as_json: bool) -> None:
    """Flats watched for inactivity, their away mode and how long they have been quiet."""
    if ctx.invoked_subcommand is not None:
        return
    rows = ask(target, "residents")
    if as_json:
        render.emit_json(rows)
    elif not rows:
        click.echo("no flat is watched by an inactivity rule")
    else:
        click.echo(render.table(rows, COLUMNS))


def _set(target: Target, flat: str, until: float, as_json: bool) -> dict[str, Any]:
    result: dict[str, Any] = ask(target, "resident_away", {"flat": flat, "until_wall_s": until, "by": operator()})
    if as_json:
        render.emit_json(result)
    return result


@residents.command("away")
@click.argument("flat")
@click.option("--until", "until", required=True, metavar="DATE", help="back on this local date (end of day) or date-time")
@target_options
@json_option
def away(target: Target, flat: str, until: str, as_json: bool) -> None:
    """FLAT (building-unit-room, e.g. 2-1-401) is away: no welfare alarm until DATE."""
    _set(target, flat, parse_until(until), as_json)
    if not as_json:
        click.echo(f"{flat}: away until {render.wall(parse_until(until))}, set by {operator()}")


@residents.command("back")
@click.argument("flat")
@target_options
@json_option
def back(target: Target, flat: str, as_json: bool) -> None:
    """FLAT is home again: the inactivity window starts now."""
    _set(target, flat, 0.0, as_json)
    if not as_json:
        click.echo(f"{flat}: back home, set by {operator()}")
