"""`gateway lorawan devices` (from the running daemon: joined state, DevAddr, last FCnt, RSSI/SNR, replays
per device, and the packet forwarders) and `gateway lorawan listen` (daemon stopped: run the network
server on the GWMP port and print every frame as it arrives, for the installer's walk test)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click

from gateway.cli import render
from gateway.cli.common import Target, ask, json_option, target_options


def lorawan_ports(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The daemon's lorawan_gwmp drivers (health detail carries `forwarders`), by port name."""
    return {name: h for name, h in (status.get("drivers") or {}).items()
            if isinstance(h, dict) and "forwarders" in (h.get("detail") or {})}


def _age(wall: float | None) -> str | None:
    return None if wall is None else f"{render.age(max(0.0, time.time() - wall))} ago"


DEVICE_COLUMNS: list[render.Column] = [
    ("ID", lambda r: r["id"]),
    ("MODE", lambda r: r["activation"]),
    ("JOINED", lambda r: "yes" if r["joined"] else "no"),
    ("DEVADDR", lambda r: r.get("dev_addr")),
    ("FCNT", lambda r: r.get("last_fcnt")),
    ("RSSI", lambda r: r.get("last_rssi_dbm")),
    ("SNR", lambda r: r.get("last_snr_db")),
    ("LAST SEEN", lambda r: _age(r.get("last_seen_wall_s"))),
    ("REPLAYS", lambda r: r.get("replay_suspects") or None),
    ("REJECTS", lambda r: render.values(r.get("rejects")) if r.get("rejects") else None),
]


@click.group()
def lorawan() -> None:
    """LoRaWAN (packet forwarder + embedded network server): devices and walk-test listening."""


@lorawan.command()
@target_options
@json_option
def devices(target: Target, as_json: bool) -> None:
    """Every LoRaWAN device as the running daemon sees it, and its packet forwarders."""
    ports = lorawan_ports(ask(target, "status"))
    if as_json:
        render.emit_json({name: h.get("detail") for name, h in ports.items()})
        return
    if not ports:
        click.echo("no lorawan_gwmp port in this gateway's config")
        return
    for name, h in ports.items():
        d = h["detail"]
        click.echo(f"port {name}: {h['state']}{' - ' + d['reason'] if d.get('reason') else ''}  region {d.get('region')}  udp {d.get('listen')}")
        for eui, f in (d.get("forwarders") or {}).items():
            click.echo(f"  forwarder {eui} at {f.get('pull_addr')}: last keepalive {f.get('last_pull_age_s')} s ago"
                       f"{'  SILENT' if f.get('silent') else ''}")
        rows = [{"id": dev_id, **row} for dev_id, row in (d.get("devices") or {}).items()]
        click.echo(render.table(rows, DEVICE_COLUMNS) if rows else "  no devices")
        state = d.get("counter_state") or {}
        if state.get("error"):
            click.echo(f"  state: {state['error']}")


# `gateway lorawan listen --json` kept its first keys' meaning (installers' walk-test scripts read them):
# kind join/data/duplicate/rejected and the reason; the tap's own words came in beside them (docs/CLI.md).
_DATA_VERDICTS = frozenset({"accepted", "replay_suspect", "retransmission", "codec_error"})


def listen_row(h: Any) -> dict[str, Any]:
    """One `lorawan listen --json` line: the tap's frame (as in a `lora_listen` report: source, verdict,
    frame type as `frame`, length, port, freq_mhz, datr) with the original keys on top."""
    import msgspec

    row = msgspec.structs.asdict(h)
    frame = row.pop("kind")
    if h.verdict in _DATA_VERDICTS:
        kind = "join" if frame == "join" else "data"
    else:
        kind = "duplicate" if h.verdict == "duplicate" else "rejected"
    row.update(device_id=h.device_id or None, kind=kind, reason=None if h.verdict in ("accepted", "duplicate") else h.verdict,
               frame=frame)
    return row


@lorawan.command()
@click.option("--port", "port_name", help="the [ports.X] name (default: the first lorawan_gwmp port)")
@click.option("--seconds", type=click.FloatRange(1, 3600), default=60, show_default=True, help="how long to listen")
@click.option("--state-dir", type=click.Path(file_okay=False), help="read sessions from here (default: the store's directory)")
@target_options
@click.option("--json", "as_json", is_flag=True, help="one JSON line per frame")
def listen(target: Target, port_name: str | None, seconds: float, state_dir: str | None, as_json: bool) -> None:
    """Run the network server on the GWMP port (daemon stopped) and print each frame as it arrives."""
    from pathlib import Path

    import msgspec
    import structlog

    from drivers.base import DriverContext, Heard
    from drivers.lorawan.driver import LorawanDriver
    from gateway.clock import Clock
    from gateway.config import load_config, load_credentials
    from gateway.daemon import resolve_devices

    cfg = load_config(target.config_path)
    names = [n for n, (drv, _) in cfg.ports.items() if drv == "lorawan_gwmp"]
    if not names or (port_name and port_name not in names):
        raise click.ClickException(f"no lorawan_gwmp port {port_name or ''} in {target.config_path} (have: {', '.join(names) or 'none'})")
    name = port_name or names[0]
    creds = load_credentials(cfg.uplink.credentials_file) if cfg.uplink.credentials_file else None
    devices = tuple(d for d in resolve_devices(cfg).values() if d.port == name)

    ctx = DriverContext(name, cfg.ports[name][1], devices, {d.profile: cfg.profile_specs.get(d.profile) for d in devices},
                        Clock(cfg.clock.sync), structlog.get_logger(), secrets=dict(creds.lora_keys) if creds else {},
                        state_dir=Path(state_dir) if state_dir else Path(cfg.store.path).parent)
    driver = LorawanDriver(ctx)
    driver.store.path = None  # read the daemon's sessions and counters, never write them: the daemon owns the file
    heard: list[Heard] = []

    def observe(h: Heard) -> None:
        """The driver's radio tap, as the daemon's `lora_listen` reads it."""
        heard.append(h)
        if as_json:  # one JSON line per frame: a stream
            click.echo(msgspec.json.encode(listen_row(h)).decode())
        else:
            click.echo(f"{time.strftime('%H:%M:%S')}  {h.device_id or '(not in config)':<16} {h.source or '?':<16} {h.verdict:<15} "
                       f"{h.kind:<14} fcnt {h.fcnt}  rssi {h.rssi_dbm} snr {h.snr_db}  {h.freq_mhz} MHz {h.datr}")

    def emit(item: Any) -> None:
        if not as_json:
            click.echo(f"          {render.values(msgspec.to_builtins(item).get('values') or {'event': f'{item.kind}/{item.code}'}, 8)}")

    driver.add_observer(observe)

    async def main() -> None:
        try:
            async with asyncio.timeout(seconds):
                await driver.run(emit)
        except TimeoutError:
            pass

    if not as_json:
        click.echo(f"listening on udp {cfg.ports[name][1].bind_host}:{cfg.ports[name][1].bind_port} for {seconds:g} s "
                   "(stop the daemon first: it owns the port)...", err=True)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    click.echo(f"{len(heard)} frames heard", err=True)
