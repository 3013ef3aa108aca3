"""`gateway status`: the one screen a maintainer reads first. From the daemon when it runs; from the
SQLite file (read-only) when it does not, saying so, and exiting 3 so scripts notice."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import click

from gateway.cli import render
from gateway.cli.common import EXIT_UNAVAILABLE, Target, ask, json_option, target_options
from gateway.control.client import DaemonUnavailable

CLASSES = ("alarm", "event", "status", "telemetry")
DOWN_NOTE = "daemon not running: showing the stored state"
NO_ACCESS_NOTE = "no access to the daemon's socket: showing the stored state"


def down_note(exc: Exception) -> str:
    # A refused connect means "not in the service's group", not "daemon down": say which.
    return NO_ACCESS_NOTE if "permission denied" in str(exc) else DOWN_NOTE


def disk_facts(store_path: str) -> dict[str, Any] | None:
    """Usage of the filesystem holding the store (the SD card on a Pi)."""
    directory = Path(store_path).parent
    try:
        du = shutil.disk_usage(directory)
    except OSError:
        return None
    return {"path": str(directory), "total_bytes": du.total, "free_bytes": du.free, "used_pct": round(100 * du.used / du.total, 1)}


def stored_state(store_path: str) -> dict[str, Any]:
    """The outbox statistics read straight from the file, read-only (never blocks the writer)."""
    try:
        from gateway.store.readonly import open_readonly  # the store's own reader knows its schema
    except ImportError:
        open_readonly = None
    if not os.path.exists(store_path):
        return {"error": f"no store at {store_path}"}
    if open_readonly is None:
        files = [p for p in (store_path, store_path + "-wal") if os.path.exists(p)]
        return {"db_bytes": sum(os.path.getsize(p) for p in files), "note": "store reader not in this build: file size only"}
    import msgspec

    try:
        return msgspec.to_builtins(open_readonly(store_path))
    except Exception as exc:  # noqa: BLE001 - any failure of the fallback is reported, never a traceback
        return {"error": f"cannot read {store_path}: {exc}"}


@click.command()
@target_options
@json_option
def status(target: Target, as_json: bool) -> None:
    """Uplink, queue, clock, drivers, alarms and disk at a glance."""
    if target.config_note:
        click.echo(target.config_note, err=True)
    disk = disk_facts(target.store_path)
    try:
        st = ask(target, "status")
    except DaemonUnavailable as exc:
        out = {"source": "store", "note": down_note(exc), "reason": str(exc), "store": stored_state(target.store_path), "disk": disk}
        if as_json:
            render.emit_json(out)
        else:
            click.echo(f"{out['note']} ({exc})", err=True)
            click.echo(_human_store(out["store"], target.store_path, disk))
        raise SystemExit(EXIT_UNAVAILABLE) from None
    out = {"source": "daemon", **st, "disk": disk}
    if as_json:
        render.emit_json(out)
    else:
        click.echo(human(out))


def _pick(d: dict[str, Any], *keys: str) -> Any:
    return next((d[k] for k in keys if d.get(k) is not None), None)


def _uplink_line(up: dict[str, Any] | None) -> str:
    if not up:
        return "not running in this daemon"
    state = up.get("state", "?")
    since = _pick(up, "since_wall", "state_since_wall", "since")
    since_age = _pick(up, "since_s", "state_age_s")
    puback_age = _pick(up, "last_puback_age_s")
    puback_wall = _pick(up, "last_puback_wall", "last_puback")
    parts = [str(state)]
    if up.get("up") is False and up.get("reason"):  # why it is down (gateway/uplink/faults.py words)
        parts.append(f"{up['reason']}: {up.get('detail', '')}"[:160].rstrip(": "))
    if since is not None:
        parts.append(f"since {render.wall(since)}")
    elif since_age is not None:
        parts.append(f"for {render.age(since_age)}")
    if puback_age is not None:
        parts.append(f"last PUBACK {render.age(puback_age)} ago")
    elif puback_wall is not None:
        parts.append(f"last PUBACK {render.wall(puback_wall)}")
    else:
        parts.append("no PUBACK yet")
    return ", ".join(parts)


def _queue_line(store: dict[str, Any]) -> str:
    depth = store.get("depth", {})
    oldest = store.get("oldest_age_s", {})
    parts = []
    for cls in CLASSES:
        n = depth.get(cls, 0)
        parts.append(f"{cls} {n}" + (f" (oldest {render.age(oldest[cls])})" if n and cls in oldest else ""))
    return " | ".join(parts)


def _store_line(store: dict[str, Any]) -> str:
    line = f"{render.size(store.get('db_bytes'))} on disk"
    if "bytes_written" in store:
        line += f", {render.size(store['bytes_written'])} written since daemon start"
    line += f", fault: {store.get('fault') or 'none'}"
    return line


def _disk_line(disk: dict[str, Any] | None) -> str:
    if disk is None:
        return "unknown (store directory missing)"
    return f"{disk['path']}: {render.size(disk['free_bytes'])} free of {render.size(disk['total_bytes'])} ({disk['used_pct']}% used)"


def driver_rows(drivers: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for port, h in sorted(drivers.items()):
        last_ok = h.get("last_ok")
        counters = {k: v for k, v in (h.get("counters") or {}).items() if v}
        rows.append({"port": port, "state": h.get("state"), "last_ok": last_ok[0] if last_ok else None,
                     "error": (h.get("detail") or {}).get("port_error") or "", "counters": counters})
    return rows


def human(st: dict[str, Any]) -> str:
    lines = [
        f"gateway {st.get('gateway_id', '?')}  version {st.get('version', '?')}  up {render.age(st.get('uptime_s'))}",
        f"uplink   {_uplink_line(st.get('uplink'))}",
        f"clock    {'synchronised' if st.get('clock_synced') else 'NOT synchronised (records are re-based when it syncs)'}",
        f"alarms   {st['active_alarms']} active" if "active_alarms" in st else "alarms   no rule engine running",
    ]
    if "store" in st:
        lines.append(f"queue    {_queue_line(st['store'])}")
        lines.append(f"store    {_store_line(st['store'])}")
    lines.append(f"disk     {_disk_line(st.get('disk'))}")
    rows = driver_rows(st.get("drivers", {}))
    if rows:
        lines.append("")
        lines.append(render.table(rows, [
            ("PORT", lambda r: r["port"]), ("STATE", lambda r: r["state"]),
            ("LAST OK", lambda r: render.wall(r["last_ok"])), ("ERROR", lambda r: r["error"]),
            ("COUNTERS", lambda r: render.values(r["counters"], 6)),
        ]))
    return "\n".join(lines)


def _human_store(store: dict[str, Any], path: str, disk: dict[str, Any] | None) -> str:
    if "error" in store:
        return f"store    {store['error']}\ndisk     {_disk_line(disk)}"
    lines = [f"store    {path}"]
    if "depth" in store:
        lines.append(f"queue    {_queue_line(store)}")
    lines.append(f"store    {_store_line(store)}")
    if store.get("note"):
        lines.append(f"note     {store['note']}")
    lines.append(f"disk     {_disk_line(disk)}")
    return "\n".join(lines)
