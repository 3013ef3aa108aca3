"""`gateway selftest [--sounder] [--watch]`: the installer's commissioning checklist in the style of
`iotedge check`: grouped, PASS/WARN/FAIL/SKIP per line with the reason and a fix that works in the
current state, one summary line `N passed, M warnings, K failed`; exit 0 unless something FAILs."""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
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


MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
FOLD_PASSES = 3  # a group with more passing lines than this shows them as one line (40 devices heard)


def summary(results: list[Check]) -> dict[str, int]:
    return {s: sum(1 for c in results if c.status == s) for s in ("pass", "warn", "fail", "skip")}


def summary_line(counts: dict[str, int]) -> str:
    line = f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed"
    return line + (f", {counts['skip']} skipped" if counts["skip"] else "")


def report_text(results: list[Check], verbose: bool = False) -> str:
    groups: dict[str, list[Check]] = {}
    for c in results:
        groups.setdefault(c.group or "other", []).append(c)
    lines = []
    for group, checks in groups.items():
        counts = summary(checks)
        lines.append(f"{group} ({counts['pass']}/{len(checks)} passed)" if len(checks) > 1 else group)
        passes = [c for c in checks if c.status == "pass"]
        fold = not verbose and len(passes) > FOLD_PASSES
        if fold:
            lines.append(f"  PASS  {len(passes)} {'devices' if group == 'devices' else 'checks'} ok (--verbose lists them)")
        folded: dict[tuple[str, str], list[Check]] = {}
        for c in checks:
            if c.fold and not verbose:
                folded.setdefault((c.status, c.fold), []).append(c)
        shown: set[int] = set()
        for c in checks:
            if fold and c.status == "pass":
                continue
            same = folded.get((c.status, c.fold), [])
            if len(same) > FOLD_PASSES:
                if id(same[0]) in shown:
                    continue
                shown.add(id(same[0]))
                names = [x.name.removeprefix("device ") for x in same]
                lines.append(render.clip(f"  {MARK[c.status]}  {len(same)} devices {c.fold}:", 80))
                wrapped = textwrap.wrap(", ".join(names), 72, break_on_hyphens=False)
                lines += [f"        {w}" for w in wrapped[:3]]
                if len(wrapped) > 3:
                    lines.append("        ... (--verbose lists each)")
                lines.append("        fix: they report every few hours: press their test buttons during")
                lines.append("             `gateway commission walk` (--building B), or wait")
                continue
            lines.append(f"  {MARK[c.status]}  {c.name}: {c.reason}")
            if c.status != "pass" and c.fix:
                lines.append(f"        fix: {c.fix}")
    counts = summary(results)
    lines.append("")
    lines.append(summary_line(counts) + ("" if not counts["fail"] else ": NOT ready for service"))
    return "\n".join(lines)


@click.command()
@click.option("--sounder", is_flag=True, help=f"also pulse the guard-room sounder for {SOUNDER_PULSE_S:g} s")
@click.option("--watch", "watch_s", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="run again every SECONDS until every check passes (Ctrl-C to stop)")
@click.option("--verbose", "-v", is_flag=True, help="list every passing line too")
@target_options
@json_option
def selftest(target: Target, sounder: bool, watch_s: float | None, verbose: bool, as_json: bool) -> None:
    """Commissioning checklist: config, credentials, ports, devices, broker TLS, clock, disk."""
    while True:
        env = gather(target)
        results = run_checks(env)
        if sounder:
            results += [dataclasses.replace(c, group="sounder") for c in pulse_sounder(env, target)]
            sounder = False  # pulse once, not on every watch round
        counts = summary(results)
        ok = counts["fail"] == 0
        if as_json:
            render.emit_json({"ok": ok, "summary": counts, "checks": [dataclasses.asdict(c) for c in results]})
        else:
            if watch_s:
                click.clear()
                click.echo(time.strftime("%H:%M:%S") + f"  (every {watch_s:g} s; Ctrl-C to stop)")
            click.echo(report_text(results, verbose))
        if not watch_s or (ok and not counts["warn"]):
            break
        try:
            time.sleep(watch_s)
        except KeyboardInterrupt:
            break
    if not ok:
        raise SystemExit(EXIT_FAIL)
