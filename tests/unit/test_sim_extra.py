"""`gateway simulate` without the [sim] extra says what to install instead of a ModuleNotFoundError (issue 16)."""

from __future__ import annotations

import importlib.util

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli


@pytest.mark.parametrize("args", [["simulate", "modbus", "--help"], ["simulate", "--courtyard", __file__, "--gateway-config", "x.toml"]])
def test_simulate_without_the_sim_extra_names_it(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pymodbus" else real(name, *a))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "pip install 'courtyard-gateway[sim]'" in result.output and "pymodbus" in result.output
