"""Issue 17 (RSS <= 40 MiB): `gateway run` loads the daemon, not the CLI's other commands, the platform's
tools, the simulators, provisioning, nor drivers its ports do not use. Checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import click

from gateway.cli.main import LAZY_COMMANDS, cli

NOT_IN_THE_DAEMON = ("gateway.cli.status", "gateway.platform.cli", "gateway.simulate.cli", "gateway.provision",
                     "gateway.panel.cli", "gateway.commission.sheet", "cryptography", "tomlkit", "openpyxl", "aiohttp",
                     "drivers.lora.driver", "drivers.lorawan.driver", "drivers.cellular.nbiot", "drivers.cellular.sms",
                     "drivers.modbus.driver", "drivers.modbus.simulator", "pymodbus")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


def test_what_gateway_run_imports_before_building_drivers_leaves_out_the_tools() -> None:
    mods = _modules_after("import gateway.cli.main, gateway.fleet.runner, gateway.daemon, drivers.registry")
    loaded = sorted(m for m in mods if m.startswith(NOT_IN_THE_DAEMON))
    assert loaded == []


def test_a_spec_builds_its_driver_on_first_use_only() -> None:
    mods = _modules_after("from drivers.registry import DRIVERS\nDRIVERS['modbus_tcp'].build.__qualname__")
    assert "drivers.modbus.driver" not in mods
    from drivers.registry import DRIVERS

    assert "drivers.modbus.driver:ModbusDriver" in DRIVERS["modbus_tcp"].build.__qualname__


def test_every_lazy_command_loads_under_its_own_name() -> None:
    ctx = click.Context(cli)
    for name in LAZY_COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
    assert set(LAZY_COMMANDS) <= set(cli.list_commands(ctx))
