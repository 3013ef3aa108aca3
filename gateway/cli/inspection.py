"""`gateway test fire|power` and `gateway tests --since`: the tests an inspector asks for, and their record.

`test` goes through the daemon (control socket); `tests` reads the journal file directly, so an inspector
gets the list even when the daemon is down.
"""

from __future__ import annotations

import time
import tomllib
from typing import Any

import click

from gateway.cli import render
from gateway.cli.alarms import operator
from gateway.cli.common import EXIT_FAIL, Target, ask, json_option, target_options

POLL_S = 1.0

TEST_COLUMNS: list[render.Column] = [
    ("WHEN", lambda e: render.wall(e["wall_s"])),
    ("TEST", lambda e: e["kind"]),
    ("RESULT", lambda e: "pass" if e["ok"] else "FAIL"),
    ("DEVICE", lambda e: e.get("device")),
    ("BY", lambda e: e["by"]),
    ("SUMMARY", lambda e: e["summary"]),
]


@click.group("test")
def test() -> None:
    """Run a recorded inspection test (simulated fire, power switchover)."""


@test.command("fire")
@click.option("--device", default=None, metavar="ID", help="smoke or gas detector (default: the first configured)")
@target_options
@json_option
def test_fire(target: Target, device: str | None, as_json: bool) -> None:
    """Simulate a fire alarm marked as a TEST end to end (sounder, platform, centre; SMS marked 【测试】)."""
    args: dict[str, Any] = {"by": f"cli:{operator()}"}
    if device:
        args["device"] = device
    result = ask(target, "test_fire", args)
    if as_json:
        render.emit_json(result)
        return
    click.echo(f"test alarm raised on {result['device']} ({result['code']}); it clears by itself in "
               f"{result['clear_after_s']:g} s. Check the guard room, the platform and the centre.")


@test.command("power")
@click.option("--window", "window_s", type=render.Duration(), default=None, help="how long to wait (default [selfcheck] power_test_window_s)")
@target_options
@json_option
def test_power(target: Target, window_s: float | None, as_json: bool) -> None:
    """Record a mains switchover test: cut mains to the UPS, wait, restore it; the result is recorded."""
    args: dict[str, Any] = {"by": f"cli:{operator()}"}
    if window_s is not None:
        args["window_s"] = window_s
    status = ask(target, "test_power", args)
    if not as_json:
        click.echo(f"armed for {status['window_s']:g} s: cut mains to the UPS now, then restore it")
    shown = set()
    while status["state"] == "running":
        for key, label in (("on_battery_wall_s", "on battery"), ("on_mains_wall_s", "back on mains")):
            if status.get(key) and key not in shown and not as_json:
                shown.add(key)
                click.echo(f"{render.wall(status[key])}: {label}")
        time.sleep(POLL_S)
        status = ask(target, "test_power_status")
    if as_json:
        render.emit_json(status)
    else:
        click.echo(f"{status['state'].upper()}: {status['summary']}")
    if status["state"] != "passed":
        raise SystemExit(EXIT_FAIL)


def journal_path(target: Target) -> str:
    from gateway.selfcheck.journal import default_path

    try:
        with open(target.config_path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        raw = {}
    section = raw.get("selfcheck")
    if not isinstance(section, dict):
        section = {}
    return str(section.get("journal_path") or default_path(target.store_path))


@click.command("tests")
@click.option("--since", "since_s", type=render.Duration(), default="30d", show_default=True, metavar="DURATION")
@target_options
@json_option
def tests(target: Target, since_s: float, as_json: bool) -> None:
    """Self-checks, fire tests and switchover tests of the last DURATION, for an inspector."""
    import msgspec

    from gateway.selfcheck.journal import Journal

    entries = [msgspec.to_builtins(e) for e in Journal(journal_path(target)).read(time.time() - since_s)]
    if as_json:
        render.emit_json(entries)
        return
    if not entries:
        click.echo(f"no tests recorded in the last {render.age(since_s)}")
        return
    click.echo(render.table(entries, TEST_COLUMNS))
    counts = {k: sum(1 for e in entries if e["kind"] == k) for k in ("selfcheck", "fire_test", "power_test")}
    failed = sum(1 for e in entries if not e["ok"])
    click.echo(f"\n{counts['selfcheck']} self-checks, {counts['fire_test']} fire tests, {counts['power_test']} "
               f"switchover tests; {failed} failed")


def check_power(env: Any) -> list[Any]:
    """`gateway selftest` line for power (append to gateway.cli.checks.CHECKS). No UPS is a WARN: the
    line passes (exit code unchanged) but says so, since a mains cut then stops the gateway."""
    from gateway.cli.checks import Check

    cfg = env.cfg.extra.get("power") if env.cfg is not None else None
    if cfg is None or not cfg.ups:
        return [Check("power", True, "WARN: no UPS configured: a mains cut stops the gateway and may corrupt the SD card",
                      "fit a UPS HAT read by NUT and set [power] ups = \"<name in ups.conf>\" (docs/power.md)")]
    health = (env.status or {}).get("power")
    if health is None:
        return [Check("power", True, f"UPS {cfg.ups} configured; daemon not running, not read")]
    if health.get("state") == "up":
        batt = health.get("battery") or {}
        return [Check("power", True, f"on mains, battery {batt.get('charge_pct')} %, runtime {render.age(batt.get('runtime_s'))}")]
    return [Check("power", False, f"{health.get('state')}: {health.get('reason')}",
                  f"upsc {cfg.ups}@{cfg.host}:{cfg.port}; check the UPS, its battery and mains")]


def power_line(health: dict[str, Any] | None) -> str:
    """The `gateway status` power line (status.human adds `f"power    {power_line(st.get('power'))}"`)."""
    if health is None or health.get("state") == "off":
        return "no UPS configured (a mains cut stops the gateway)"
    batt = health.get("battery") or {}
    charge = f"{batt['charge_pct']:g} %" if batt.get("charge_pct") is not None else "charge ?"
    runtime = f", {render.age(batt['runtime_s'])} left" if batt.get("runtime_s") is not None else ""
    since = render.wall(health.get("since_wall_s"))
    if health.get("state") == "up":
        return f"on mains, battery {charge}{runtime}"
    return f"{str(health.get('state')).upper()} since {since}: {health.get('reason')} (battery {charge}{runtime})"
