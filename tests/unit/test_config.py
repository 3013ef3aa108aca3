"""Config validation: the example loads; every golden bad config gives exactly its message(s);
the credentials file must be private; `gateway config check` prints OK or every error."""

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli
from gateway.config import load_config, load_credentials
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CASES = sorted((ROOT / "tests/cases/config").iterdir())


def test_example_config_loads_and_resolves_profiles():
    cfg = load_config(ROOT / "config/gateway.example.toml")
    assert cfg.identity.gateway_id == "gw-xinhong-03"
    assert set(cfg.ports) >= {"rs485", "pumphouse"}
    for d in cfg.devices:
        assert d.profile in cfg.profiles and d.profile in cfg.profile_specs


def test_there_are_at_least_fifteen_distinct_bad_configs():
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_config_gives_its_exact_messages(case):
    expected = (case / "config.err").read_text().splitlines()
    with pytest.raises(ConfigError) as info:
        load_config(case / "gateway.toml")
    assert info.value.problems == expected


def test_config_check_cli_prints_ok_for_the_example():
    res = CliRunner().invoke(cli, ["config", "check", str(ROOT / "config/gateway.example.toml")])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("OK: ")


def test_config_check_cli_prints_every_error_and_exits_1():
    case = ROOT / "tests/cases/config/several_errors_at_once"
    res = CliRunner().invoke(cli, ["config", "check", str(case / "gateway.toml")])
    assert res.exit_code == 1
    for line in (case / "config.err").read_text().splitlines():
        assert line in res.output
    assert "3 error(s)" in res.output


def _creds(tmp_path, mode, text='mqtt_password = "canary-Pw-1"\n[command_keys]\nops = "00ff"\n'):
    p = tmp_path / "credentials.toml"
    p.write_text(text)
    os.chmod(p, mode)
    return p


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_credentials_readable_by_group_or_others_are_refused(tmp_path, mode):
    p = _creds(tmp_path, mode)
    with pytest.raises(ConfigError) as info:
        load_credentials(p)
    assert info.value.problems == [
        f"{p}: credentials file is accessible by group or others (mode {mode:04o}); run: chmod 600 {p}"
    ]


def test_private_credentials_load_and_bad_values_are_not_echoed(tmp_path):
    creds = load_credentials(_creds(tmp_path, 0o600))
    assert creds.mqtt_password == "canary-Pw-1" and creds.command_keys == {"ops": "00ff"}
    bad = _creds(tmp_path, 0o600, "mqtt_password = 123456789\n")
    with pytest.raises(ConfigError) as info:
        load_credentials(bad)
    assert "123456789" not in str(info.value)
    assert info.value.problems == ["credentials.toml: mqtt_password: '<redacted>' is a int, expected str"]


def test_a_certificate_not_yet_signed_is_a_warning_not_a_refusal(tmp_path):
    """Issue 15 item 3: a freshly provisioned gateway waits for its certificate with the alarms running."""
    src = (ROOT / "config/gateway.example.toml").read_text()
    marker = "[uplink]\n"
    assert marker in src
    cfg_text = src.replace(marker, marker + f'cert_file = "{tmp_path}/gw.pem"\nkey_file = "{tmp_path}/gw.key"\n', 1)
    cfg_file = tmp_path / "gateway.toml"
    cfg_file.write_text(cfg_text)
    for name in ("profiles",):
        if (ROOT / "config" / name).is_dir():
            (tmp_path / name).symlink_to(ROOT / "config" / name)
    load_config(cfg_file)  # no ConfigError
    res = CliRunner().invoke(cli, ["config", "check", str(cfg_file)])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "gw.pem" in res.output and "does not exist" in res.output
