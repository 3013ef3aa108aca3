"""The CLI when the daemon is down (stored-state fallback, exit 3), alarm commands through the real
control server and handler table, `gateway logs`, and the output helpers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import types

import click
import pytest
from click.testing import CliRunner

from gateway import log as logsetup
from gateway.cli import render
from gateway.cli.main import cli
from gateway.control import handlers
from gateway.control.server import ControlServer
from gateway.errors import CommandRejected
from gateway.model import Alarm, AlarmState, Severity, Stamp
from tests.support.daemon import ROOT, write_config
from tests.support.wait import wait_for


def test_status_with_the_daemon_down_shows_the_stored_state_and_exits_3(tmp_path):
    import asyncio

    from gateway import log as logsetup
    from gateway.clock import Clock
    from gateway.config.schema import Store
    from gateway.model import Reading, RecordClass
    from gateway.store.outbox import Outbox

    cfg = write_config(tmp_path, "/dev/null")
    (tmp_path / "state").mkdir()

    async def fill() -> None:  # a store a daemon left behind: one alarm and three readings queued
        clock = Clock("assume_synced")
        ob = Outbox(Store(path=str(tmp_path / "state" / "outbox.db")), clock, logsetup.get(), {"mqtt": set(RecordClass)})
        await ob.open()
        await ob.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"title": "烟感报警"})
        for i in range(3):
            ob.put_reading(Reading("hydrant-1", clock.now(), {"pressure_mpa": 0.3 + i / 100}))
        await ob.close()

    asyncio.run(fill())
    res = CliRunner().invoke(cli, ["status", "--config", str(cfg)])
    assert res.exit_code == 3
    assert "daemon not running: showing the stored state" in res.stderr
    assert "disk" in res.stdout
    out = json.loads(CliRunner().invoke(cli, ["status", "--json", "--config", str(cfg)]).stdout)
    assert out["source"] == "store" and out["note"] == "daemon not running: showing the stored state"
    assert out["store"]["depth"]["alarm"] == 1 and out["store"]["depth"]["telemetry"] == 3


def test_queue_and_devices_with_the_daemon_down_exit_3(tmp_path):
    cfg = write_config(tmp_path, "/dev/null")
    q = CliRunner().invoke(cli, ["queue", "--config", str(cfg)])
    assert q.exit_code == 3 and "no store at" in q.stdout
    d = CliRunner().invoke(cli, ["devices", "--config", str(cfg)])
    assert d.exit_code == 3 and "daemon not running" in d.stderr and "systemctl start" in d.stderr


class FakeRules:
    """The rule engine's public surface (active/history/ack/silence/clear) with two alarms."""

    def __init__(self) -> None:
        st = Stamp(1_700_000_000.0, "boot", 1, True)
        self.alarms = {a.id: a for a in (
            Alarm("a-1", "smoke", "smoke-401", Severity.CRITICAL, AlarmState.RAISED, "烟感报警", st, st),
            Alarm("a-2", "pressure_low", "hydrant-1", Severity.MAJOR, AlarmState.RAISED, "low pressure", st, st),
        )}
        self.calls: list[tuple[str, str, str]] = []

    def active(self) -> list[Alarm]:
        return [a for a in self.alarms.values() if a.state != AlarmState.CLEARED]

    def history(self, since_s: float) -> list[Alarm]:
        return list(self.alarms.values())

    async def _op(self, name: str, alarm_id: str, by: str) -> str:
        if alarm_id not in self.alarms:
            raise CommandRejected("unknown_alarm", f"no active alarm {alarm_id}")
        self.calls.append((name, alarm_id, by))
        return "ok"

    async def ack(self, alarm_id: str, by: str) -> str:
        return await self._op("ack", alarm_id, by)

    async def silence(self, alarm_id: str, by: str) -> str:
        return await self._op("silence", alarm_id, by)

    async def clear(self, alarm_id: str, by: str) -> str:
        return await self._op("clear", alarm_id, by)


@pytest.fixture
def control(tmp_path):
    """The real ControlServer serving the real handler table of a daemon whose only stage is rules."""
    logsetup.setup("critical")
    rules = FakeRules()
    daemon = types.SimpleNamespace(rules=rules)
    sock = tmp_path / "control.sock"
    loop = asyncio.new_event_loop()
    server = ControlServer(str(sock), handlers.ControlApi(daemon).handlers(), handlers.MUTATING, logsetup.get())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    task = asyncio.run_coroutine_threadsafe(server.run(), loop)
    wait_for(sock.exists, what="control socket")
    yield sock, rules
    task.cancel()
    wait_for(lambda: not sock.exists(), what="socket removed")
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_alarms_lists_active_and_history(control):
    sock, _ = control
    res = CliRunner().invoke(cli, ["alarms", "--socket", str(sock), "--json"])
    rows = json.loads(res.stdout)
    assert res.exit_code == 0 and [a["id"] for a in rows] == ["a-1", "a-2"]
    assert {"id", "rule", "device_id", "severity", "state", "title", "raised"} <= set(rows[0])
    human = CliRunner().invoke(cli, ["alarms", "--socket", str(sock)])
    assert "critical" in human.output and "烟感报警" in human.output
    hist = CliRunner().invoke(cli, ["alarms", "--since", "24h", "--socket", str(sock), "--json"])
    assert hist.exit_code == 0 and len(json.loads(hist.stdout)) == 2
    both = CliRunner().invoke(cli, ["alarms", "--active", "--since", "1h", "--socket", str(sock)])
    assert both.exit_code == 2


def test_ack_silence_clear_reach_the_rule_engine_with_the_operator(control):
    sock, rules = control
    for op in ("ack", "silence", "clear"):
        res = CliRunner().invoke(cli, ["alarms", op, "a-1", "--socket", str(sock)], env={"SUDO_USER": "li"})
        assert res.exit_code == 0, res.output
    assert rules.calls == [("ack", "a-1", "cli:li"), ("silence", "a-1", "cli:li"), ("clear", "a-1", "cli:li")]
    res = CliRunner().invoke(cli, ["alarms", "ack", "nope", "--socket", str(sock)])
    assert res.exit_code == 1 and "unknown_alarm" in res.stderr


def test_logs_runs_journalctl_for_the_unit(tmp_path):
    fake = tmp_path / "bin" / "journalctl"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "journalctl $*"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    argv = [sys.executable, "-c", "from gateway.cli.main import cli; cli()", "logs", "--follow", "-n", "50"]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert out.stdout.strip() == "journalctl -u courtyard-gateway --no-pager -n 50 --follow"


def test_durations_and_tables():
    d = render.Duration()
    assert [d.convert(v, None, None) for v in ("90", "90s", "15m", "24h", "7d", "2w")] == [90, 90, 900, 86400, 604800, 1209600]
    with pytest.raises(click.BadParameter):
        d.convert("soon", None, None)
    text = render.table([{"a": "2栋1单元401", "b": None}, {"a": "x", "b": 3}], [("LOC", lambda r: r["a"]), ("N", lambda r: r["b"])])
    lines = text.splitlines()
    # Wide characters count double, so the second column lines up in a terminal.
    assert lines[1].endswith("  -") and lines[2].startswith("x" + " " * 12)
    assert render.age(None) == "never" and render.age(3700) == "1 h 01 min"


def test_provision_is_mounted_from_the_deployment_package():
    res = CliRunner().invoke(cli, ["provision", "--help"])
    assert res.exit_code == 0
    assert "--gateway-id" in res.output and "--broker" in res.output and "--from" in res.output


def test_logs_falls_back_to_the_daemons_own_lines_when_journald_has_none(control, tmp_path, monkeypatch):
    sock, _ = control
    empty = tmp_path / "bin" / "journalctl"
    empty.parent.mkdir()
    empty.write_text("#!/bin/sh\nexit 0\n")  # journald holds nothing for the unit (daemon run in the foreground)
    empty.chmod(0o755)
    monkeypatch.setenv("PATH", f"{empty.parent}:{os.environ['PATH']}")
    logsetup.get(stage="test").critical("walk_started", building="2", secret_note="x")
    res = CliRunner().invoke(cli, ["logs", "--socket", str(sock), "--json", "-n", "5"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines[-1]["event"] == "walk_started" and lines[-1]["building"] == "2" and "_seq" not in lines[-1]
    gone = CliRunner().invoke(cli, ["logs", "--socket", str(tmp_path / "nobody.sock")])
    assert gone.exit_code == 3 and "journald has no lines" in gone.stderr
