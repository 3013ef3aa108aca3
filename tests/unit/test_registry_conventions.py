"""Every driver in the registry has a simulator module, a README beside it and a port section in the
example config; every codec a profile names is registered (telegraf plugins/all_test.go)."""

import importlib
import tomllib
from pathlib import Path

import pytest

from drivers.codecs.registry import CODECS
from drivers.registry import DRIVERS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = tomllib.loads((ROOT / "config/gateway.example.toml").read_text())


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_driver_has_simulator_readme_and_example_section(name):
    spec = DRIVERS[name]
    assert spec.name == name
    sim = importlib.import_module(spec.simulator)
    assert sim.__doc__, f"{spec.simulator} has no module docstring"
    pkg = importlib.import_module(spec.package)
    readme = Path(pkg.__file__).parent / "README.md"
    assert readme.is_file() and len(readme.read_text()) > 500
    assert any(port.get("driver") == name for port in EXAMPLE["ports"].values()), f"no [ports.*] with driver = {name!r} in the example config"


def test_every_profile_codec_is_registered():
    for path in sorted((ROOT / "config/profiles").glob("*.toml")):
        prof = tomllib.loads(path.read_text())
        for section in ("lora", "nbiot", "lorawan"):
            if section in prof:
                assert prof[section]["codec"] in CODECS, f"{path.name}: codec {prof[section]['codec']!r} is not registered"
