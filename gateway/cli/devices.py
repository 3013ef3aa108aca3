"""`gateway devices` (what the daemon last saw of every device) and `gateway poll DEVICE` (ask now)."""

from __future__ import annotations

import textwrap
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


def _seen(r: dict[str, Any]) -> str | None:
    if r.get("last_seen_age_s") is None:
        return None
    return f"{render.age(r['last_seen_age_s'])} ago" + ("*" if r.get("restored") else "")


# The default view fits 80 columns; --wide adds values, location and port (issue 18).
DEVICE_COLUMNS: list[render.Column] = [
    ("ID", lambda r: r["id"]),
    ("TYPE", lambda r: r["type"]),
    ("STATE", lambda r: r["state"]),
    ("LAST SEEN", _seen),
    ("BATT", lambda r: r.get("battery")),
    ("SIGNAL", lambda r: _signal(r.get("signal"))),
]
WIDE_COLUMNS: list[render.Column] = DEVICE_COLUMNS + [
    ("VALUES", lambda r: render.values(r.get("values"), 8)),
    ("LOCATION", lambda r: r.get("location")),
    ("PORT", lambda r: r.get("port")),
]
RESTORED_NOTE = "* last seen before the daemon restarted (kept in the state directory)"


@click.command()
@click.argument("device_id", required=False)
@click.option("--offline", is_flag=True, help="only devices not currently online")
@click.option("--type", "dev_type", type=click.Choice([t.value for t in DeviceType]), help="only this device type")
@click.option("--wide", is_flag=True, help="all columns (wider than 80)")
@target_options
@json_option
def devices(target: Target, device_id: str | None, offline: bool, dev_type: str | None, wide: bool, as_json: bool) -> None:
    """Every device: state, last seen, battery, signal. With DEVICE_ID: that device in detail."""
    if device_id:
        detail = ask(target, "device", {"device_id": device_id})
        if as_json:
            render.emit_json(detail)
        else:
            click.echo(detail_text(detail))
        return
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
    click.echo(render.table(rows, WIDE_COLUMNS if wide else DEVICE_COLUMNS, None if wide else 80))
    down = sum(1 for r in rows if r["state"] != "online")
    click.echo(f"\n{len(rows)} devices, {down} not online")
    if any(r.get("restored") for r in rows):
        click.echo(RESTORED_NOTE)


def detail_text(d: dict[str, Any]) -> str:
    """`gateway devices ID`: who and where, what it said last, its signal over time, its alarms."""
    from gateway.cli.alarms import ALARM_COLUMNS

    lines = [
        f"{d['id']}  {d['type']}  profile {d['profile']}  port {d['port']} address {d.get('address')}",
        f"where    {d.get('location') or '-'}  resident {d.get('resident')}  contacts {', '.join(d.get('contacts') or []) or '-'}",
        f"state    {d['state']}, last seen {_seen(d) or 'never'}, {d.get('frames', 0)} frames"
        + (f", heartbeat every {render.age(d['heartbeat_s'])}" if d.get("heartbeat_s") else ", polled"),
        f"battery  {d.get('battery') if d.get('battery') is not None else '-'}   signal {_signal(d.get('signal')) or '-'}",
    ]
    values = [f"{k}={render.values({k: v})[len(k) + 1:]}" for k, v in (d.get("values") or {}).items()]
    lines += textwrap.wrap(" ".join(values) or "-", 80, initial_indent="values   ", subsequent_indent=" " * 9,
                           break_on_hyphens=False)
    if d.get("last_event"):
        lines.append(f"event    {d['last_event']}")
    if d.get("recent"):
        lines.append("\nlast frames")
        lines += [render.clip(f"  {render.wall(f['wall'])}  {f['what']}", 80) for f in reversed(d["recent"])]
    if d.get("signal_history"):
        lines.append("\nsignal history")
        lines += [f"  {render.wall(s['wall'])}  " + _signal({k: v for k, v in s.items() if k != 'wall'}) for s in reversed(d["signal_history"])]
    alarms = d.get("alarms") or []
    lines.append("\nalarms (7 days)" if alarms else "\nno alarms in 7 days")
    if alarms:
        lines.append(render.table(alarms, ALARM_COLUMNS, 80))
    if d.get("restored"):
        lines.append("\n" + RESTORED_NOTE)
    return "\n".join(render.clip(line, 80) for line in "\n".join(lines).splitlines())


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
