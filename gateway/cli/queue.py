"""`gateway queue`: what waits in the outbox for the platform; `queue purge` drops old telemetry
(only telemetry: alarms, events and status records are never purged from here)."""

from __future__ import annotations

from typing import Any

import click

from gateway.cli import render
from gateway.cli.common import EXIT_UNAVAILABLE, Target, ask, json_option, target_options
from gateway.cli.status import CLASSES, down_note, stored_state
from gateway.control.client import DaemonUnavailable


def queue_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    depth, oldest = stats.get("depth", {}), stats.get("oldest_age_s", {})
    return [{"class": c, "waiting": depth.get(c, 0), "oldest_age_s": oldest.get(c)} for c in CLASSES]


def _print(stats: dict[str, Any]) -> None:
    click.echo(render.table(queue_rows(stats), [
        ("CLASS", lambda r: r["class"]), ("WAITING", lambda r: r["waiting"]),
        ("OLDEST", lambda r: render.age(r["oldest_age_s"]) if r["waiting"] else None),
    ]))
    facts = [f"last seq {stats.get('last_seq', '-')}", f"evicted {stats.get('evicted', 0)}",
             f"dropped {stats.get('dropped', 0)}", f"size {render.size(stats.get('db_bytes'))}"]
    if stats.get("fault"):
        facts.append(f"FAULT {stats['fault']}")
    click.echo("\n" + ", ".join(facts))


@click.group(invoke_without_command=True)
@target_options
@json_option
@click.pass_context
def queue(ctx: click.Context, target: Target, as_json: bool) -> None:
    """Outbox depth per class and age of the oldest record. `purge` drops old telemetry."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        stats = ask(target, "queue")
        source = "daemon"
    except DaemonUnavailable as exc:
        click.echo(f"{down_note(exc)} ({exc})", err=True)
        stats, source = stored_state(target.store_path), "store"
        if as_json:
            render.emit_json({"source": source, **stats})
        elif "error" in stats or "depth" not in stats:
            click.echo(stats.get("error") or stats.get("note"))
        else:
            _print(stats)
        raise SystemExit(EXIT_UNAVAILABLE) from None
    if as_json:
        render.emit_json({"source": source, **stats})
    else:
        _print(stats)


@queue.command()
@click.option("--telemetry", is_flag=True, help="required: only telemetry can be purged")
@click.option("--older-than", "older_than_s", type=render.Duration(), default="7d", show_default=True, metavar="DURATION")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@target_options
@json_option
def purge(target: Target, telemetry: bool, older_than_s: float, yes: bool, as_json: bool) -> None:
    """Delete queued telemetry older than DURATION (never alarms, events or status)."""
    if not telemetry:
        raise click.UsageError("say --telemetry: only telemetry can be purged; alarms and events never are")
    stats = ask(target, "queue")
    waiting = stats.get("depth", {}).get("telemetry", 0)
    if not yes:
        click.confirm(f"Delete queued telemetry older than {render.age(older_than_s)} "
                      f"({waiting} readings waiting in total; alarms and events are kept)?", abort=True, err=True)
    result = ask(target, "queue_purge", {"older_than_s": older_than_s}, timeout_s=60.0)
    if as_json:
        render.emit_json(result)
    else:
        click.echo(f"purged {result.get('purged', 0)} telemetry records older than {render.age(older_than_s)}")
