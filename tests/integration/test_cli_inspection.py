"""`gateway tests --since` reads the journal without the daemon; `gateway test fire` without a daemon exits 3;
selftest's power line WARNs when no UPS is configured."""

from __future__ import annotations

import time

from click.testing import CliRunner

from gateway.cli.checks import Env
from gateway.cli.inspection import check_power
from gateway.cli.main import cli
from gateway.config import load_config
from gateway.selfcheck.journal import Entry, Journal


def write_config(tmp_path, extra: str = "") -> str:
    path = tmp_path / "gateway.toml"
    (tmp_path / "profiles").mkdir(exist_ok=True)
    path.write_text(f"""
[identity]
gateway_id = "gw-inspect"
[uplink]
broker_url = "mqtt://127.0.0.1:1"
[store]
path = "{tmp_path}/state/outbox.db"
[control]
socket = "{tmp_path}/control.sock"
{extra}
""")
    return str(path)


def test_tests_lists_the_journal_for_an_inspector(tmp_path):
    conf = write_config(tmp_path)
    j = Journal(str(tmp_path / "state" / "tests.jsonl"))
    now = time.time()
    j.append(Entry(kind="selfcheck", wall_s=now - 40 * 86400, ok=True, by="schedule", summary="all passed"))
    j.append(Entry(kind="fire_test", wall_s=now - 3600, ok=True, by="cli:wang", summary="simulated smoke alarm", device="smoke-1"))
    j.append(Entry(kind="power_test", wall_s=now - 60, ok=False, by="cli:li", summary="no switch to battery seen"))
    out = CliRunner().invoke(cli, ["tests", "--since", "30d", "--config", conf])
    assert out.exit_code == 0, out.output
    assert "fire_test" in out.output and "power_test" in out.output and "FAIL" in out.output
    assert "all passed" not in out.output  # 40 days ago
    assert "0 self-checks, 1 fire tests, 1 switchover tests; 1 failed" in out.output


def test_test_fire_needs_the_daemon(tmp_path):
    out = CliRunner().invoke(cli, ["test", "fire", "--config", write_config(tmp_path)])
    assert out.exit_code == 3 and "daemon not running" in out.output


def test_selftest_power_line_warns_without_ups(tmp_path):
    env = Env(config_path="x", cfg=load_config(write_config(tmp_path)))
    (line,) = check_power(env)
    assert line.ok and line.reason.startswith("WARN: no UPS")
    env = Env(config_path="x", cfg=load_config(write_config(tmp_path, '[power]\nups = "pihat"\n')),
              status={"power": {"state": "down", "reason": "ups unreadable: unreachable"}})
    (line,) = check_power(env)
    assert not line.ok and "unreachable" in line.reason


def test_status_power_line():
    from gateway.cli.inspection import power_line

    assert power_line(None).startswith("no UPS")
    up = {"state": "up", "battery": {"charge_pct": 100.0, "runtime_s": 1800.0}, "since_wall_s": 0}
    assert power_line(up).startswith("on mains, battery 100 %")
    low = {"state": "degraded", "reason": "mains_lost: OB", "since_wall_s": 1_790_000_000.0,
           "battery": {"charge_pct": 9.0, "runtime_s": None}}
    assert power_line(low).startswith("DEGRADED since") and "mains_lost: OB" in power_line(low)
