"""`gateway status`: the one screen a maintainer reads first. From the daemon when it runs; from the
SQLite file (read-only) when it does not, saying so, and exiting 3 so scripts notice."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import click

from gateway.cli import render
from gateway.cli.common import EXIT_UNAVAILABLE, Target, ask, json_option, target_options
from gateway.control.client import DaemonUnavailable

if TYPE_CHECKING:
    from gateway.store.record import OutboxStats

CLASSES = ("alarm", "event", "status", "telemetry")
DOWN_NOTE = "daemon not running: showing the stored state"
NO_ACCESS_NOTE = "no access to the daemon's socket: showing the stored state"


def down_note(exc: Exception) -> str:
    # A refused connect means "not in the service's group", not "daemon down": say which.
    return NO_ACCESS_NOTE if "permission denied" in str(exc) else DOWN_NOTE


GROUP_HINT = "the daemon may well be running: add yourself to its group (sudo usermod -aG courtyard $USER, then log in again) or use sudo"


class DiskFacts(TypedDict):
    """`disk` in `gateway status --json` (docs/CLI.md)."""

    path: str
    total_bytes: int
    free_bytes: int
    used_pct: float


def disk_facts(store_path: str) -> DiskFacts | None:
    """Usage of the filesystem holding the store (the SD card on a Pi)."""
    directory = Path(store_path).parent
    try:
        du = shutil.disk_usage(directory)
    except OSError:
        return None
    return {"path": str(directory), "total_bytes": du.total, "free_bytes": du.free, "used_pct": round(100 * du.used / du.total, 1)}


def stored_state(store_path: str) -> dict[str, Any]:
    """The outbox statistics read straight from the file, read-only (never blocks the writer)."""
    open_readonly: Callable[[str], OutboxStats] | None
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
        stats: dict[str, Any] = msgspec.to_builtins(open_readonly(store_path))
        return stats
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
        note, stored = down_note(exc), stored_state(target.store_path)
        if as_json:
            render.emit_json({"source": "store", "note": note, "reason": str(exc), "store": stored, "disk": disk})
        else:
            click.echo(f"{note} ({exc})" + (f"; {GROUP_HINT}" if note == NO_ACCESS_NOTE else ""), err=True)
            click.echo(_human_store(stored, target.store_path, disk))
        raise SystemExit(EXIT_UNAVAILABLE) from None
    out = {"source": "daemon", **st, "disk": disk}
    if as_json:
        render.emit_json(out)
    else:
        click.echo(human(out))


def _pick(d: dict[str, Any], *keys: str) -> Any:
    return next((d[k] for k in keys if d.get(k) is not None), None)


# The uplink's state machine (gateway/uplink/client.py ConnState) in a maintainer's words.
UPLINK_WORDS = {
    "connected": "connected",
    "probing": "DOWN: broker not reachable, checking every 2 s",
    "backoff": "DOWN: broker reachable, next connect attempt after a pause",
    "connecting": "connecting",
    "disconnected": "disconnected (stopped)",
    "not_authorized": "DOWN: the broker refuses this gateway",
}
# The uplink's down reasons (gateway/uplink/faults.py, docs/uplink.md "Down reasons") in words.
FAULT_WORDS = {
    "cert_missing": "a TLS file named in the config is missing",
    "cert_invalid": "our certificate or key cannot be used",
    "cert_expired": "our client certificate has expired",
    "ca_invalid": "uplink.ca_file cannot be used",
    "broker_url_invalid": "uplink.broker_url is invalid",
    "host_unresolvable": "the broker's host name does not resolve (DNS)",
    "broker_unreachable": "the broker does not answer (network, APN, firewall)",
    "tls_server_untrusted": "the broker's certificate is not trusted (check uplink.ca_file)",
    "tls_client_refused": "the broker refused our client certificate",
    "tls_refused": "the TLS handshake failed (check uplink.ca_file and the gateway certificate)",
    "not_authorized": "the broker refused the credentials or the topic ACL (check the credentials file and the broker's ACL)",
    "server_busy": "the broker is busy and asks to come back later",
    "server_moved": "the broker says to use another server",
    "connect_failed": "the last connect attempt failed",
    "connection_lost": "the connection dropped",
    "publish_refused": "the broker refused a publish (topic ACL)",
}


def uplink_words(up: dict[str, Any]) -> str:
    """'DOWN: broker not reachable, checking every 2 s (the broker does not answer ...: detail)'."""
    state = str(up.get("state", "?"))
    words = UPLINK_WORDS.get(state, state)
    reason = up.get("reason") if up.get("up") is False else ""
    fault = reason or (up.get("fault") if state != "connected" else "") or ""
    if fault in FAULT_WORDS:
        detail = str(up.get("detail") or "")[:100] if reason else ""
        words += f" ({FAULT_WORDS[fault]}{': ' + detail if detail else ''})"
    elif fault:
        words += f" ({fault})"
    return words


def _uplink_line(up: dict[str, Any] | None) -> str:
    if not up:
        return "not running in this daemon"
    since = _pick(up, "since_wall", "state_since_wall", "since")
    since_age = _pick(up, "since_s", "state_age_s")
    puback_age = _pick(up, "last_puback_age_s")
    puback_wall = _pick(up, "last_puback_wall", "last_puback")
    parts = [uplink_words(up)]
    if since is not None:
        parts.append(f"since {render.wall(since)}" + (f" ({render.age(since_age)})" if since_age is not None else ""))
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
    if store.get("bytes_written_per_day"):  # projected from the last hour: SD-card wear at a glance (issue 17)
        span = store.get("bytes_written_span_s", 0)
        over = f" over the last {span // 60} min" if 0 < span < 3000 else ""  # a young projection says so
        line += f" (~{render.size(store['bytes_written_per_day'])}/day{over})"
    line += f", fault: {store.get('fault') or 'none'}"
    return line


def _disk_line(disk: DiskFacts | None) -> str:
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


def trouble_lines(faults: list[dict[str, Any]] | None) -> list[str]:
    """The faults the guard room's trouble lamp shows, first (issue 15 item 7): what is broken, why, since when."""
    if faults is None:
        return []
    if not faults:
        return ["faults   none"]
    return [f"FAULT    {f.get('source')}: {f.get('reason')} (since {render.wall(f.get('since_wall_s'))})" for f in faults]


def human(st: dict[str, Any]) -> str:
    lines = trouble_lines(st.get("trouble")) + [
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


def _human_store(store: dict[str, Any], path: str, disk: DiskFacts | None) -> str:
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
