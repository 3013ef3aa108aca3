"""Daily self-check under ManualClock (issue 23): once per local day at daily_at, result recorded (outbox
record + journal), a failure or a missed day is a fault; quiet hours keep the sounder silent at night."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo

import msgspec
import pytest
import structlog

from gateway.clock import ManualClock
from gateway.model import RecordClass
from gateway.selfcheck.checks import judge
from gateway.selfcheck.config import SelfCheckSection
from gateway.selfcheck.journal import Entry, Journal
from gateway.selfcheck.runner import SETTLE_S, SelfCheckScheduler
from tests.support.wait import async_wait_for

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
GOOD = {"trouble": [], "drivers": {"rs485": {"state": "up"}}, "store": {"fault": None},
        "uplink": {"state": "connected"}, "clock_synced": True, "power": {"state": "up", "reason": "OL"}}


def at(y: int, mo: int, d: int, h: int, mi: int) -> float:
    return dt.datetime(y, mo, d, h, mi, tzinfo=TZ).timestamp()


class Records:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    async def put(self, cls, kind, device, stamp, body) -> int:
        self.rows.append((cls, kind, device, body))
        return len(self.rows)


def cfg(**over) -> SelfCheckSection:
    return msgspec.convert({"daily_at": "10:00"} | over, SelfCheckSection)


async def test_never_in_the_first_minutes_after_a_start(tmp_path):
    clock = ManualClock(wall_s=at(2026, 12, 1, 11, 0))  # started after today's 10:00
    sched = SelfCheckScheduler(cfg(), clock, structlog.get_logger(), lambda: dict(GOOD), Records(), "gw-1",
                               Journal(str(tmp_path / "tests.jsonl")), tick_s=0.01)
    assert not sched.due()  # devices have not reported yet: a check now would fail on the restart itself
    clock.advance(SETTLE_S)
    assert sched.due()  # today's check, caught up once settled


async def test_runs_once_per_local_day_at_daily_at(tmp_path):
    clock = ManualClock(wall_s=at(2026, 12, 1, 9, 49))
    status = dict(GOOD)
    records, journal = Records(), Journal(str(tmp_path / "tests.jsonl"))
    sched = SelfCheckScheduler(cfg(), clock, structlog.get_logger(), lambda: status, records, "gw-1", journal, tick_s=0.01)
    task = asyncio.create_task(sched.run())
    try:
        assert sched.runs == 0 and not sched.due()
        clock.advance(660)  # 10:00 local, past the settle time
        sched.wake()
        await async_wait_for(lambda: sched.runs == 1, what="first daily run")
        cls, kind, device, body = records.rows[0]
        assert (cls, kind, device, body["ok"], body["by"]) == (RecordClass.EVENT, "event.selfcheck", "gw-1", True, "schedule")
        assert sched.trouble_reason() == ""
        clock.advance(3 * 3600)
        assert not sched.due() and sched.runs == 1  # not twice the same day
        status["uplink"] = {"state": "backoff", "last_error": "refused"}
        clock.advance(21 * 3600)  # next day 10:00
        sched.wake()
        await async_wait_for(lambda: sched.runs == 2, what="second daily run")
        assert records.rows[-1][3]["ok"] is False
        assert sched.trouble_reason() == "daily self-check failed: uplink"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    entries = journal.read()
    assert [(e.kind, e.ok) for e in entries] == [("selfcheck", True), ("selfcheck", False)]
    # A restart the same day does not run it again.
    again = SelfCheckScheduler(cfg(), clock, structlog.get_logger(), lambda: status, records, "gw-1", journal)
    assert not again.due()


async def test_missed_day_is_a_fault():
    clock = ManualClock(wall_s=at(2026, 12, 1, 9, 0))
    sched = SelfCheckScheduler(cfg(enabled=True), clock, structlog.get_logger(), lambda: GOOD, None, "gw-1",
                               Journal("/nonexistent/dir/tests.jsonl"))
    clock.advance(25 * 3600)
    assert sched.trouble_reason() == ""
    clock.advance(2 * 3600)
    assert "26 h" in sched.trouble_reason()


async def test_sounder_pulse_is_skipped_in_quiet_hours(tmp_path):
    pulses: list[float] = []

    async def pulse(s: float) -> None:
        pulses.append(s)

    clock = ManualClock(wall_s=at(2026, 12, 1, 23, 30))
    sched = SelfCheckScheduler(cfg(sounder_pulse=True), clock, structlog.get_logger(), lambda: GOOD, None, "gw-1",
                               Journal(str(tmp_path / "j.jsonl")), sounder_pulse=pulse)
    body = await sched.run_now("cli:test")
    assert pulses == [] and "quiet hours" in body["checks"][-1]["reason"]
    clock.advance(11 * 3600)  # 10:30 next day
    await sched.run_now("cli:test")
    assert pulses == [1.0]


def test_config_refuses_an_audible_check_at_night():
    with pytest.raises(msgspec.ValidationError, match="quiet_hours"):
        cfg(daily_at="22:00", sounder_pulse=True)
    assert cfg(daily_at="22:00").daily_at == "22:00"  # silent: fine at night
    with pytest.raises(msgspec.ValidationError):
        cfg(daily_at="25:00")


def test_judge_no_ups_is_a_warning_not_a_failure():
    results = judge({**GOOD, "power": {"state": "off"}})
    power = next(r for r in results if r.name == "power")
    assert power.level == "warn" and power.ok
    results = judge({**GOOD, "trouble": [{"source": "selfcheck", "reason": "x"}]})
    assert all(r.ok for r in results)  # our own fault does not fail the next check


def test_journal_survives_a_cut_line_and_filters_by_time(tmp_path):
    j = Journal(str(tmp_path / "tests.jsonl"))
    j.append(Entry(kind="fire_test", wall_s=100.0, ok=True, by="cli:a", summary="s", device="smoke-1"))
    with open(j.path, "ab") as f:
        f.write(b'{"kind":"selfch')  # a power cut mid-line
    j.append(Entry(kind="power_test", wall_s=200.0, ok=False, by="cli:b", summary="t"))
    assert [e.kind for e in j.read()] == ["fire_test", "power_test"]
    assert [e.kind for e in j.read(since_wall_s=150)] == ["power_test"]
