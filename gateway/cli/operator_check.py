"""`gateway operator-check confirm`: the guard answers the fire centre's 查岗 (GB/T 26875 type 91)."""

from __future__ import annotations

import click

from gateway.cli import render
from gateway.cli.alarms import operator
from gateway.cli.common import Target, ask, json_option, target_options


@click.group("operator-check")
def operator_check() -> None:
    """The district fire centre's operator check (查岗): a person in the guard room must confirm."""


@operator_check.command("confirm")
@target_options
@json_option
def confirm(target: Target, as_json: bool) -> None:
    """Confirm the open operator check as the person at this keyboard."""
    result = ask(target, "operator_check_confirm", {"by": operator()})
    if as_json:
        render.emit_json(result)
    else:
        click.echo(f"operator check confirmed by {operator()}")
