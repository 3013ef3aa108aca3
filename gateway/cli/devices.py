"""`gateway devices` (what the daemon last saw of every device) and `gateway poll DEVICE` (ask now)."""

from __future__ import annotations

from typing import Any

import click

from gateway.cli import render
from gateway.cli.common import Target, ask, json_option, target_options
from gateway.model import DeviceType


def _signal(sig: dict[str, Any] | None) -> str:
    # RSSI/SNR for LoRa, CSQ/RSRP for cellular; Modbus has none.
    if not sig:
        return ""
    short = {"rssi_dbm": "rssi", "snr_db": "snr", "csq": "csq", "rsrp_dbm": "rsrp"}
    return " ".join(f"{short.get(k, k)} {v}" for k, v in sig.items())


DEVICE_COLUMNS: list[render.Column] = [
    ("ID", lambda r: r["id"]),
    ("TYPE", lambda r: r["type"]),
    ("STATE", lambda r: r["state"]),
    ("LAST SEEN", lambda r: None if r.get("last_seen_age_s") is None else f"{render.age(r['last_seen_age_s'])} ago"),
    ("BATTERY", lambda r: r.get("battery")),
    ("SIGNAL", lambda r: _signal(r.get("signal"))),
    ("VALUES", lambda r: render.values(r.get("values"))),
    ("LOCATION", lambda r: r.get("location")),
    ("PORT", lambda r: r.get("port")),
]


@click.command()
@click.option("--offline", is_flag=True, help="only devices not currently online")
@click.option("--type", "dev_type", type=click.Choice([t.value for t in DeviceType]), help="only this device type")
@target_options
@json_option
def devices(target: Target, offline: bool, dev_type: str | None, as_json: bool) -> None:
    """Every device: last seen, last values, battery, signal, state."""
    args: dict[str, Any] = {"offline": offline}
    if dev_type:
        args["type"] = dev_type
    rows = ask(target, "devices", args)
    if as_json:
        render.emit_json(rows)
        return
    if not rows:
        click.echo("no devices match" if (offline or dev_type) else "no devices configured")
        return
    click.echo(render.table(rows, DEVICE_COLUMNS))
    down = sum(1 for r in rows if r["state"] != "online")
    click.echo(f"\n{len(rows)} devices, {down} not online")


def item_line(item: dict[str, Any]) -> str:
    stamp = item.get("stamp") or [None]
    when = render.wall(stamp[0])
    if item.get("type") == "event":
        code = f":{item['code']}" if item.get("code") else ""
        detail = f" {render.values(item.get('detail'), 8)}" if item.get("detail") else ""
        return f"{when}  event {item['kind']}{code}{detail}"
    return f"{when}  reading {render.values(item.get('values'), 32)}"


@click.command()
@click.argument("device")
@target_options
@json_option
def poll(target: Target, device: str, as_json: bool) -> None:
    """Poll DEVICE now and show the decoded reading (polled devices only)."""
    items = ask(target, "poll", {"device_id": device}, timeout_s=30.0)
    if as_json:
        render.emit_json(items)
        return
    if not items:
        click.echo(f"{device}: answered, nothing decoded")
        return
    click.echo(f"{device}:")
    for item in items:
        click.echo("  " + item_line(item))
