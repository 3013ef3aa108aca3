"""`gateway fleet apply|status|update`: the platform engineer's tool for config bundles and software
releases (issue 20, docs/fleet.md). Signs with a command key, publishes over MQTT, rolls out in waves,
prints each gateway's outcome from its replies."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from gateway.cli.common import EXIT_FAIL, EXIT_UNAVAILABLE, fail
from gateway.fleet.bundle import DEFAULT_DEADLINE_S, make_bundle_args


def _gateways(ids: tuple[str, ...], listfile: str | None) -> list[str]:
    out = list(ids)
    if listfile:
        out += [ln.strip() for ln in Path(listfile).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not out:
        raise click.UsageError("name at least one --gateway or a --gateways file")
    return list(dict.fromkeys(out))


def _transport(o: dict[str, Any]) -> Any:
    from gateway.fleet.tool import BrokerRefused, MqttTransport

    key_hex = Path(o["key_file"]).read_text().strip()
    password = Path(o["password_file"]).read_text().strip() if o["password_file"] else ""
    try:
        return MqttTransport(o["broker"], o["key_id"], key_hex, username=o["username"] or "", password=password, ca_file=o["ca_file"] or "")
    except BrokerRefused as exc:  # credentials or rights: nothing was sent to any gateway
        fail(f"broker: {exc}", EXIT_FAIL)
    except OSError as exc:  # no TCP/TLS connection, no CONNACK within 10 s
        fail(f"broker {o['broker']} unreachable: {exc}", EXIT_UNAVAILABLE)


def _common(f: Any) -> Any:
    for opt in reversed([
        click.option("--broker", required=True, help="mqtt[s]://host:port of the platform broker"),
        click.option("--key-id", required=True, help="command key id (the gateways' credentials command_keys)"),
        click.option("--key-file", required=True, type=click.Path(exists=True, dir_okay=False), help="file holding the key as hex"),
        click.option("--username", default=None), click.option("--password-file", default=None, type=click.Path(exists=True, dir_okay=False)),
        click.option("--ca-file", default=None, type=click.Path(exists=True, dir_okay=False)),
        click.option("--gateway", "gateway_ids", multiple=True, help="gateway id (repeatable)"),
        click.option("--gateways", "gateways_file", default=None, type=click.Path(exists=True, dir_okay=False), help="file: one gateway id a line"),
    ]):
        f = opt(f)
    return f


@click.group()
def fleet() -> None:
    """Apply config bundles and software updates to gateways, read their status (platform side)."""


@fleet.command()
@_common
@click.option("--version", "version", required=True, help="the bundle's version label")
@click.option("--patch", "patch_file", type=click.Path(exists=True, dir_okay=False), help="TOML file: the sections to replace")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False), help="TOML file: the whole config")
@click.option("--wave", default=10, show_default=True, help="gateways per wave")
@click.option("--max-failure-pct", default=10.0, show_default=True, help="stop before the next wave above this failure rate")
@click.option("--deadline-s", default=DEFAULT_DEADLINE_S, show_default=True, help="gateway's commit deadline")
@click.option("--settle-timeout-s", default=180.0, show_default=True, help="how long to wait for each gateway's outcome")
def apply(version: str, patch_file: str | None, config_file: str | None, wave: int, max_failure_pct: float, deadline_s: float,
          settle_timeout_s: float, gateway_ids: tuple[str, ...], gateways_file: str | None, **o: Any) -> None:
    """Sign and publish a config bundle in waves; one line per gateway: ID OUTCOME DETAIL."""
    from gateway.fleet.waves import SUCCESS, WavePlan, roll_out

    if (patch_file is None) == (config_file is None):
        raise click.UsageError("give exactly one of --patch or --config")
    if patch_file:
        args = make_bundle_args(version, patch=tomllib.loads(Path(patch_file).read_text()), commit_deadline_s=deadline_s)
    else:
        args = make_bundle_args(version, config=Path(config_file).read_text(), commit_deadline_s=deadline_s)  # type: ignore[arg-type]
    gws = _gateways(gateway_ids, gateways_file)
    t = _transport(o)
    try:
        plan = WavePlan(wave_size=max(1, wave), max_failure_pct=max_failure_pct, settle_timeout_s=settle_timeout_s)
        results = roll_out(t, gws, args, plan, on_result=lambda r: click.echo(
            f"{r.gateway_id}\t{r.outcome}\t{r.config_hash[:12]}\t{r.detail}".rstrip()))
    finally:
        t.close()
    ok = sum(1 for r in results if r.outcome in SUCCESS)
    click.echo(f"{ok}/{len(results)} gateways on {version}", err=True)
    sys.exit(0 if ok == len(results) else 1)


@fleet.command()
@_common
def status(gateway_ids: tuple[str, ...], gateways_file: str | None, **o: Any) -> None:
    """Each gateway's config version, hash, pending apply and last apply error."""
    t = _transport(o)
    failed = 0
    try:
        for gw in _gateways(gateway_ids, gateways_file):
            rep = t.command(gw, "config_status", {}, 15.0)
            if rep is None or rep.get("status") != "accepted":
                failed += 1
                click.echo(f"{gw}\tno_answer\t\t{(rep or {}).get('reason', 'no reply')}")
                continue
            s = rep["result"]
            click.echo(f"{gw}\t{s.get('config_version') or '-'}\t{s.get('config_hash', '')[:12]}\t"
                       f"pending={s.get('pending_version') or '-'}\t{s.get('last_apply_error') or ''}".rstrip())
    finally:
        t.close()
    sys.exit(1 if failed else 0)


@fleet.command()
@_common
@click.option("--manifest", "manifest_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="the release's signed manifest (scripts/release.sh: <bundle>.manifest.json)")
@click.option("--wave", default=10, show_default=True, help="gateways per wave")
@click.option("--max-failure-pct", default=10.0, show_default=True, help="stop before the next wave above this failure rate")
@click.option("--deadline-s", default=180.0, show_default=True, help="gateway's commit deadline after the restart")
@click.option("--rate-bps", default=256000.0, show_default=True, help="download rate cap on each gateway (bytes/s)")
@click.option("--settle-timeout-s", default=1800.0, show_default=True, help="download + install + commit, per gateway")
def update(manifest_file: str, wave: int, max_failure_pct: float, deadline_s: float, rate_bps: float, settle_timeout_s: float,
           gateway_ids: tuple[str, ...], gateways_file: str | None, **o: Any) -> None:
    """Send a signed release to gateways in waves; one line per gateway: ID OUTCOME RELEASE DETAIL."""
    import json

    from gateway.fleet.waves import SUCCESS, WavePlan, roll_out, update_one

    manifest = json.loads(Path(manifest_file).read_text())
    args = {**manifest, "commit_deadline_s": deadline_s, "rate_bps": rate_bps}
    gws = _gateways(gateway_ids, gateways_file)
    t = _transport(o)
    try:
        plan = WavePlan(wave_size=max(1, wave), max_failure_pct=max_failure_pct, settle_timeout_s=settle_timeout_s)
        results = roll_out(t, gws, args, plan, on_result=lambda r: click.echo(
            f"{r.gateway_id}\t{r.outcome}\t{r.config_hash}\t{r.detail}".rstrip()), one=update_one)
    finally:
        t.close()
    ok = sum(1 for r in results if r.outcome in SUCCESS)
    click.echo(f"{ok}/{len(results)} gateways on {manifest.get('version')}", err=True)
    sys.exit(0 if ok == len(results) else 1)
