"""`gateway selftest [--sounder]`: the installer's commissioning checklist, PASS/FAIL per line with the
reason and the fix; exit 0 only when every line passes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import click

from gateway.cli import render
from gateway.cli.checks import Check, Env, run_checks
from gateway.cli.common import EXIT_FAIL, DaemonRefused, Target, ask, json_option, target_options
from gateway.control.client import DaemonUnavailable
from gateway.errors import ConfigError, GatewayError

SOUNDER_PULSE_S = 2.0


def gather(target: Target) -> Env:
    from gateway.config import load_config

    env = Env(config_path=target.config_path)
    try:
        env.cfg = load_config(target.config_path)
    except ConfigError as exc:
        env.config_problems = exc.problems
    try:
        env.status = ask(target, "status")
        env.devices = ask(target, "devices")
        env.ports = ask(target, "ports")
    except (DaemonUnavailable, DaemonRefused) as exc:
        env.status = env.devices = env.ports = None
        env.daemon_error = str(exc)
    return env


def sounder_outputs(cfg: Any) -> list[tuple[str, Any, Any]]:
    """(device id, device entry, modbus OutputSpec) of every configured device whose profile has a `sounder` output."""
    out = []
    for dev in cfg.devices:
        outputs = getattr(cfg.profile_specs.get(dev.profile), "outputs", None) or {}
        if "sounder" in outputs:
            out.append((dev.id, dev, outputs["sounder"]))
    return out


def pulse_sounder(env: Env, target: Target) -> list[Check]:
    """Sounder on for 2 s, then off (always, even after a failure half way)."""
    if env.cfg is None:
        return [Check("sounder", False, "not pulsed: the config is invalid", f"gateway config check {env.config_path}")]
    found = sounder_outputs(env.cfg)
    if not found:
        return [Check("sounder", False, "no device with a `sounder` output is configured",
                      "add the guard-room relay box (profile guard_relay_box) to [[devices]]")]
    out = []
    for dev_id, dev, spec in found:
        try:
            if env.status is not None:
                _pulse_via_daemon(target, dev_id)
                how = "through the daemon"
            else:
                _pulse_via_probe(env.cfg, dev, spec)
                how = "directly on the bus (daemon stopped)"
            out.append(Check(f"sounder {dev_id}", True, f"pulsed {SOUNDER_PULSE_S:g} s {how}: confirm you heard it"))
        except (GatewayError, OSError) as exc:
            out.append(Check(f"sounder {dev_id}", False, f"{type(exc).__name__}: {exc}",
                             "check the relay box wiring and its slave id; gateway devices; gateway logs"))
    return out


def _pulse_via_daemon(target: Target, dev_id: str) -> None:
    ask(target, "actuate", {"device_id": dev_id, "target": "sounder", "value": True})
    try:
        time.sleep(SOUNDER_PULSE_S)
    finally:
        ask(target, "actuate", {"device_id": dev_id, "target": "sounder", "value": False})


def _pulse_via_probe(cfg: Any, dev: Any, spec: Any) -> None:
    from drivers.modbus import probe

    port = cfg.ports[dev.port][1]
    if not getattr(port, "path", None):
        raise GatewayError(f"{dev.id} is not on a serial port; start the daemon to pulse it")
    fc = 5 if spec.function in (5, 15) else 6

    async def pulse() -> None:
        await probe.write(port.path, port.baud, dev.address, fc, spec.address, [1], port.timeout_s)
        try:
            await asyncio.sleep(SOUNDER_PULSE_S)
        finally:
            await probe.write(port.path, port.baud, dev.address, fc, spec.address, [0], port.timeout_s)

    asyncio.run(pulse())


@click.command()
@click.option("--sounder", is_flag=True, help=f"also pulse the guard-room sounder for {SOUNDER_PULSE_S:g} s")
@target_options
@json_option
def selftest(target: Target, sounder: bool, as_json: bool) -> None:
    """Commissioning checklist: config, credentials, ports, devices, broker TLS, clock, disk."""
    env = gather(target)
    results = run_checks(env)
    if sounder:
        results += pulse_sounder(env, target)
    ok = all(c.ok for c in results)
    if as_json:
        render.emit_json({"ok": ok, "checks": [dataclasses.asdict(c) for c in results]})
    else:
        width = max(len(c.name) for c in results)
        for c in results:
            click.echo(f"{'PASS' if c.ok else 'FAIL'}  {c.name.ljust(width)}  {c.reason}")
            if not c.ok and c.fix:
                click.echo(f"      {''.ljust(width)}  fix: {c.fix}")
        passed = sum(c.ok for c in results)
        click.echo(f"\n{passed} of {len(results)} checks passed" + ("" if ok else ": NOT ready for service"))
    if not ok:
        raise SystemExit(EXIT_FAIL)
