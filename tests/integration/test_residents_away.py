"""Away mode per flat (issue 22) through the real control socket and the `gateway residents` CLI: it holds
the welfare alarm, survives a restart (away.json), is uplinked as an event, and an unknown flat is refused."""

from __future__ import annotations

import asyncio
import datetime
import types

from click.testing import CliRunner

from gateway import log as logsetup
from gateway.cli.main import cli
from gateway.cli.residents import parse_until
from gateway.control import care
from gateway.control.server import ControlServer
from gateway.rules import away
from tests.support.wait import async_wait_for
from tests.unit.test_rules_engine import Rig

WELFARE = {"kind": "inactivity", "id": "welfare", "severity": "major", "title": "独居老人长时间无活动",
           "sources": [{"devices": ["gas-401"], "activity": "frame"}], "window_h": 12}
H = 3600.0


async def _rig(tmp_path):
    rig = Rig(tmp_path, rule_dicts=(WELFARE,))
    await rig.engine.start()
    daemon = types.SimpleNamespace(rules=rig.engine, clock=rig.clock, cfg=types.SimpleNamespace(store=types.SimpleNamespace(path=str(tmp_path / "outbox.db"))))
    path = tmp_path / "control.sock"
    srv = ControlServer(str(path), care.build(daemon), care.MUTATING, logsetup.get())
    task = asyncio.create_task(srv.run())
    await async_wait_for(path.exists, what="control socket")
    return rig, task, path


async def _cli(path, *args):
    return await asyncio.to_thread(CliRunner().invoke, cli, ["residents", *args, "--socket", str(path)])


async def test_away_by_cli_holds_the_alarm_survives_a_restart_and_is_uplinked(tmp_path):
    rig, task, sock = await _rig(tmp_path)
    try:
        until = datetime.datetime.fromtimestamp(rig.clock.wall() + 3 * 86400).strftime("%Y-%m-%dT%H:%M")
        res = await _cli(sock, "away", "2-1-401", "--until", until)
        assert res.exit_code == 0, res.output
        assert "2-1-401: away until" in res.output
        listing = await _cli(sock)
        assert "2-1-401" in listing.output and "gas-401" in listing.output
        (rec,) = [b for _, k, _, b in rig.outbox.records("event.away")]
        assert rec["flat"] == "2-1-401" and rec["by"].startswith("cli:") and rec["until_wall_s"] == parse_until(until)
        await rig.restart()
        assert away.restore(rig.engine, tmp_path, rig.clock.wall()) == 1
        for _ in range(4):
            await rig.tick(12 * H)  # 48 h: away the whole time
        assert rig.engine.active() == []
        for _ in range(34):
            await rig.tick(H)  # back after 72 h: a fresh 12 h window (82 h: still quiet) ...
        assert rig.engine.active() == []
        await rig.tick(1.5 * H)  # ... then the welfare alarm
        (alarm,) = rig.engine.active()
        assert alarm.title == "独居老人长时间无活动"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await rig.engine.stop()
        rig.outbox.close()


async def test_unknown_flat_and_past_dates_are_refused(tmp_path):
    rig, task, sock = await _rig(tmp_path)
    try:
        res = await _cli(sock, "away", "9-9-999", "--until", "2099-01-01")
        assert res.exit_code != 0 and "unknown_flat" in res.output and "2-1-401" in res.output
        res = await _cli(sock, "away", "2-1-401", "--until", "2020-01-01")
        assert res.exit_code != 0 and "future" in res.output
        res = await _cli(sock, "back", "2-1-401")
        assert res.exit_code == 0 and "back home" in res.output
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await rig.engine.stop()
        rig.outbox.close()


def test_a_date_means_the_end_of_that_day():
    assert parse_until("2026-12-08") == datetime.datetime(2026, 12, 9).timestamp()
    assert parse_until("2026-12-08T18:00") == datetime.datetime(2026, 12, 8, 18).timestamp()


def test_an_unreadable_away_file_is_ignored_not_fatal(tmp_path):
    (tmp_path / away.FILE_NAME).write_text("{not json")
    assert away.restore(types.SimpleNamespace(evaluators=[]), tmp_path, 0.0) == 0
