"""`gateway commission import|export|walk`: the courtyard's device list from the installers' sheet,
and the door-to-door test-button round with a live checklist and a report to hand over (issue 18)."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import click

from gateway.cli import render
from gateway.cli.alarms import operator
from gateway.cli.common import EXIT_FAIL, Target, ask, json_option, target_options

POLL_S = 1.0


@click.group()
def commission() -> None:
    """Commissioning: import the device sheet, walk test."""


@commission.command("import")
@click.argument("sheet", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path), help="credentials file (default: uplink.credentials_file)")
@click.option("--dry-run", is_flag=True, help="check the sheet against the config, write nothing")
@target_options
@json_option
def import_(target: Target, sheet: Path, credentials: Path | None, dry_run: bool, as_json: bool) -> None:
    """Import SHEET (.xlsx or .csv, one row per device) into the config's [[devices]]/[[contacts]] and
    the LoRa keys into the credentials file. Every error names its row and column (exit 1)."""
    from gateway.commission.importer import import_sheet
    from gateway.errors import ConfigError

    try:
        res = import_sheet(sheet, Path(target.config_path), credentials, dry_run)
    except ConfigError as exc:
        if not as_json:
            raise
        render.emit_json({"ok": False, "dry_run": dry_run, "errors": list(exc.problems)})
        raise SystemExit(EXIT_FAIL) from None
    if as_json:
        render.emit_json({"ok": True, "dry_run": dry_run, **res.__dict__})
        return
    verb = "would import" if dry_run else "imported"
    click.echo(f"{verb} {res.devices} devices, {res.contacts} contacts, {res.keys} LoRa keys from {sheet.name}")
    if not dry_run:
        click.echo(f"{target.config_path}: {'updated' if res.config_changed else 'unchanged'}"
                   + (f"; {res.credentials_file}: {'updated (0600)' if res.credentials_changed else 'unchanged'}" if res.keys else ""))
        click.echo("next: gateway config check, restart the daemon, gateway selftest, gateway commission walk")


@commission.command("export")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--with-keys", is_flag=True, help="include the LoRa keys (the file then holds secrets)")
@target_options
def export(target: Target, out: Path, with_keys: bool) -> None:
    """Write the configured devices to OUT (.xlsx or .csv) in the import sheet's layout (hand-over list)."""
    from gateway.commission.export import export_rows
    from gateway.commission.sheet import write_sheet

    rows = export_rows(Path(target.config_path), with_keys)
    write_sheet(out, rows)
    click.echo(f"{len(rows)} devices written to {out}" + (" (with keys: keep it safe)" if with_keys else ""))


# ---- walk ----------------------------------------------------------------------------------------
def _mark(dev: dict[str, Any]) -> str:
    return "[x]" if dev["ticked"] else "[ ]"


def _signal(dev: dict[str, Any]) -> str:
    sig = dev.get("signal") or {}
    parts = [f"{k.split('_')[0]} {v}" for k, v in sig.items()]
    if dev.get("battery") is not None:
        parts.append(f"batt {dev['battery']}")
    return "  ".join(parts)


def checklist(report: dict[str, Any]) -> str:
    """Per building and flat, each device ticked or not; fits 80 columns."""
    lines = []
    for b in report["buildings"]:
        devs = [d for f in b["flats"] for d in f["devices"]]
        done = sum(d["ticked"] for d in devs)
        lines.append(f"building {b['building']}: {done}/{len(devs)}" if b["building"] != "-" else f"courtyard: {done}/{len(devs)}")
        for f in b["flats"]:
            for d in f["devices"]:
                how = {"test_button": "test", "alarm_as_test": "test", "answered": "answered"}.get(d["how"] or "", "")
                flat = f["flat"] if f["flat"] != "-" else "common"
                lines.append(render.clip(f"  {_mark(d)} {render.pad(flat, 10)} {render.pad(d['id'], 20)} {how:<8} {_signal(d)}".rstrip(), 80))
    lines.append(f"{report['done']} of {report['total']} done, {report['left']} left"
                 + (f"; ends by itself in {render.age(report['left_s'])}" if report["active"] else f"; ended ({report['end_reason']})"))
    return "\n".join(lines)


def final_text(report: dict[str, Any]) -> str:
    when = render.wall(report["started_wall"])
    head = [f"walk test report: started {when} by {report['started_by']}, "
            f"{render.age(report['elapsed_s'])}, building {report['building'] or 'all'}",
            f"{report['done']} of {report['total']} devices ticked",
            f"{report['tagged_as_test']} test alarms recorded as tests (no SMS, no platform alarm)"]
    missing = [d["id"] for b in report["buildings"] for f in b["flats"] for d in f["devices"] if not d["ticked"]]
    if missing:
        head += textwrap.wrap("NOT ticked: " + ", ".join(missing), 80, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(render.clip(line, 80) for line in head + ["", checklist(report)])


@commission.command("walk")
@click.option("--building", help="only this building's devices")
@click.option("--duration", "duration_s", type=render.Duration(), default="60m", show_default=True,
              help="the mode ends by itself after this (at most 4h)")
@click.option("--status", "status_only", is_flag=True, help="show the running (or last) walk and exit")
@click.option("--stop", is_flag=True, help="end the running walk now and show its report")
@target_options
@json_option
def walk(target: Target, building: str | None, duration_s: float, status_only: bool, stop: bool, as_json: bool) -> None:
    """Walk test: start it, then press each device's test button; the checklist ticks as each is heard.
    Presses are recorded as tests: no SMS, no platform alarm. Exit 0 when every device was ticked."""
    if status_only or stop:
        report = ask(target, "walk_stop" if stop else "walk_status")
    else:
        args: dict[str, Any] = {"duration_s": duration_s, "by": operator()}
        if building:
            args["building"] = building
        report = ask(target, "walk_start", args)
        if not as_json:
            _panel_code(target, report)
        report = _follow(target, report, quiet=as_json)
    if as_json:
        render.emit_json(report)
    else:
        click.echo(final_text(report))
    if report["left"]:
        raise SystemExit(EXIT_FAIL)


def _panel_code(target: Target, report: dict[str, Any]) -> None:
    """The one-time code that opens the web panel's installer view on the installer's phone (issue 24),
    when the panel is set up (a panel_code_key in the credentials file). Never fatal: the walk goes on."""
    from gateway.config import load_config, load_credentials
    from gateway.errors import GatewayError
    from gateway.panel.security import walk_code

    try:
        cfg = load_config(target.config_path)
        key = load_credentials(cfg.uplink.credentials_file).panel_code_key if cfg.uplink.credentials_file else ""
    except (GatewayError, OSError):
        return
    if key and report.get("active"):
        click.echo(f"网页面板一次性验证码 (installer view /installer): {walk_code(key, report['started_wall'])}")


def _follow(target: Target, report: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Poll until every device is ticked or the mode ends; redraw on a terminal, log ticks otherwise."""
    tty = sys.stdout.isatty() and not quiet
    seen: set[str] = set()
    try:
        while report["active"] and report["left"]:
            if tty:
                click.clear()
                click.echo(checklist(report))
            elif not quiet:
                for b in report["buildings"]:
                    for f in b["flats"]:
                        for d in f["devices"]:
                            if d["ticked"] and d["id"] not in seen:
                                seen.add(d["id"])
                                click.echo(f"{time.strftime('%H:%M:%S')}  ticked {d['id']} ({b['building']}栋 {f['flat']})  {_signal(d)}")
            time.sleep(POLL_S)
            report = ask(target, "walk_status")
    except KeyboardInterrupt:
        report = ask(target, "walk_status")
    return report
