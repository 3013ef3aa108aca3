"""The engine end to end at unit level: a real SQLite file behind transact/add_record, a fake
ActionContext at the edge, a ManualClock. Lifecycle, records, sounder, SMS, escalation, restart."""

from __future__ import annotations

import asyncio

import pytest

from gateway import log as logsetup
from gateway.actions.schema import Notify, Sounder, Sms
from gateway.clock import ManualClock
from gateway.errors import CommandRejected, ModbusDeviceError, StoreError
from gateway.model import AlarmState, EventKind
from gateway.rules.engine import RuleEngine
from tests.support.wait import async_wait_for
from tests.unit.rules_support import CONTACTS, DEVICES, FakeContext, Feed, SqliteOutbox, rules

SMOKE = {"kind": "event", "id": "smoke", "severity": "critical", "title": "烟感报警", "types": ["smoke"],
         "events": ["alarm"], "codes": ["smoke"], "actions": ["sounder", "sms"]}
GAS = {"kind": "threshold", "id": "gas", "severity": "major", "title": "燃气泄漏", "types": ["gas"], "field": "lel_pct",
       "op": ">=", "limit": 25, "clear": 20, "actions": ["sms"], "flap_max": 3, "flap_window_s": 600, "flap_hold_s": 300}
NOTIFY = Notify(sounder=Sounder(device="guard-relay"))


class Rig:
    def __init__(self, tmp_path, rule_dicts=(SMOKE, GAS), notify=NOTIFY, clock=None, ctx=None):
        logsetup.setup("critical")
        self.tmp_path = tmp_path
        self.clock = clock or ManualClock(wall_s=1_795_893_120.0)  # 2026-11-29 03:12 in Asia/Shanghai
        self.feed = Feed(self.clock)
        self.ctx = ctx or FakeContext()
        self.outbox = SqliteOutbox(tmp_path / "outbox.db")
        self.rule_dicts = rule_dicts
        self.notify = notify
        self.engine = self._engine()

    def _engine(self):
        ident = type("Ident", (), {"community": "新鸿社区", "courtyard": "3号院"})()
        return RuleEngine(rules(list(self.rule_dicts)), DEVICES, self.outbox, self.ctx, self.clock, logsetup.get(),
                          notify=self.notify, contacts=CONTACTS, identity=ident)

    async def settle(self):
        """Everything queued is committed and every action task has finished."""
        await self.engine.flush()
        await async_wait_for(lambda: self.engine.tasks.pending() == 0, 5, what="actions done")
        await self.engine.flush()

    async def restart(self):
        await self.engine.stop()
        self.engine = self._engine()
        await self.engine.start()

    async def tick(self, advance_s=0.0):
        self.clock.advance(advance_s)
        await self.engine.tick()
        await self.settle()


@pytest.fixture
async def rig(tmp_path):
    rig = Rig(tmp_path)
    await rig.engine.start()
    await rig.settle()
    rig.ctx.commands.clear()
    yield rig
    await rig.engine.stop()
    rig.outbox.close()


async def smoke(rig, device="smoke-401"):
    await rig.engine.on_item(rig.feed.event(device, EventKind.ALARM, "smoke"))
    await rig.settle()


async def test_start_sets_the_coils_off_when_nothing_is_active(tmp_path):
    rig = Rig(tmp_path)
    await rig.engine.start()
    await rig.settle()
    assert rig.ctx.coil("sounder") is False and rig.ctx.coil("strobe") is False
    await rig.engine.stop()


async def test_smoke_raises_one_alarm_commits_its_record_sounds_and_texts(rig):
    await smoke(rig)
    (alarm,) = rig.engine.active()
    assert (alarm.rule, alarm.device_id, alarm.state) == ("smoke", "smoke-401", AlarmState.RAISED)
    ((seq, kind, dev, body),) = rig.outbox.records("alarm.")
    assert (kind, dev, body["alarm_id"], body["severity"], body["location"]["room"]) == (
        "alarm.raised", "smoke-401", alarm.id, "critical", "401")
    assert rig.ctx.uplink_kicks >= 1
    assert rig.ctx.coil("sounder") is True and rig.ctx.coil("strobe") is True
    numbers = sorted(n for n, _ in rig.ctx.sms)
    assert numbers == ["+8613800000001", "+8613800000002", "+8613800000005"]  # guard, grid worker, relative
    text = rig.ctx.sms[0][1]
    assert text == "【社区消防】11月29日03:12 新鸿社区3号院2栋1单元401室（独居老人） 烟感报警，请立即联系老人或拨打119"  # issue 18: date, 室, resident, advice


async def test_repeats_update_the_count_without_new_records_or_sms(rig):
    await smoke(rig)
    sms_before = len(rig.ctx.sms)
    for _ in range(3):
        await smoke(rig)
    (alarm,) = rig.engine.active()
    assert alarm.repeats == 3
    assert [k for _, k, _, _ in rig.outbox.records("alarm.")] == ["alarm.raised"]
    assert len(rig.ctx.sms) == sms_before
    assert rig.outbox.conn.execute("SELECT repeats FROM alarm").fetchone() == (3,)


async def test_guard_room_button_acknowledges_and_stops_sounder_and_strobe(rig):
    await smoke(rig)
    await smoke(rig, "smoke-502")
    await rig.engine.on_item(rig.feed.event("guard-relay", EventKind.BUTTON, "ack"))
    await rig.settle()
    assert {a.state for a in rig.engine.active()} == {AlarmState.ACKNOWLEDGED}
    assert {a.acknowledged_by for a in rig.engine.active()} == {"button:guard-relay"}
    assert rig.ctx.coil("sounder") is False and rig.ctx.coil("strobe") is False
    assert [k for _, k, _, _ in rig.outbox.records("alarm.")].count("alarm.acknowledged") == 2


async def test_silence_stops_the_sounder_but_keeps_strobe_and_escalation(rig):
    await smoke(rig)
    (alarm,) = rig.engine.active()
    assert await rig.engine.silence(alarm.id, "cli:guard") == "silenced"
    await rig.settle()
    assert rig.ctx.coil("sounder") is False and rig.ctx.coil("strobe") is True
    await rig.tick(300)
    assert "+8613800000003" in [n for n, _ in rig.ctx.sms]  # safety manager: tier 1 still happens


async def test_auto_clear_ends_the_alarm_and_keeps_it_in_history(rig):
    await smoke(rig)
    await rig.engine.on_item(rig.feed.event("smoke-401", EventKind.ALARM_CLEARED))
    await rig.settle()
    assert rig.engine.active() == []
    (cleared,) = rig.engine.history(3600)
    assert (cleared.state, cleared.cleared_by) == (AlarmState.CLEARED, "auto")
    assert [k for _, k, _, _ in rig.outbox.records("alarm.")] == ["alarm.raised", "alarm.cleared"]
    assert rig.ctx.coil("sounder") is False


async def test_unacknowledged_alarm_escalates_tier_by_tier_and_ack_stops_it(rig):
    await smoke(rig)
    await rig.tick(299)
    assert "+8613800000003" not in [n for n, _ in rig.ctx.sms]
    await rig.tick(1)
    assert "+8613800000003" in [n for n, _ in rig.ctx.sms]
    escalated = [b for _, k, _, b in rig.outbox.records("alarm.") if k == "alarm.escalated"]
    assert [(b["detail"]["tier"], b["detail"]["roles"]) for b in escalated] == [(1, ["safety_manager"])]
    (alarm,) = rig.engine.active()
    await rig.engine.ack(alarm.id, "platform:ops")
    await rig.tick(1000)
    assert "+8613800000004" not in [n for n, _ in rig.ctx.sms]  # street center never bothered
    assert [k for _, k, _, _ in rig.outbox.records("alarm.")][-1] == "alarm.acknowledged"


async def test_restart_restores_active_alarm_without_resending_sms(rig):
    await smoke(rig)
    sent = list(rig.ctx.sms)
    (before,) = rig.engine.active()
    rig.ctx.commands.clear()
    rig.clock.advance(10)
    await rig.restart()
    await rig.settle()
    (after,) = rig.engine.active()
    assert (after.id, after.state, after.raised) == (before.id, before.state, before.raised)
    assert rig.ctx.sms == sent
    assert rig.ctx.coil("sounder") is True  # still unacknowledged within max_duration: sounds again
    await rig.tick(289)  # 299 s after the raise: not yet tier 1
    assert rig.ctx.sms == sent
    await rig.tick(1)  # 300 s after the raise, measured across the restart
    assert [n for n, _ in rig.ctx.sms[len(sent):]] == ["+8613800000003"]
    await rig.engine.on_item(rig.feed.event("smoke-401", EventKind.ALARM_CLEARED))  # the restored latch clears
    await rig.settle()
    assert rig.engine.active() == []


async def test_sms_policy_uplink_down_waits_for_the_outage(rig):
    await rig.engine.on_item(rig.feed.reading("gas-401", lel_pct=30))
    await rig.settle()
    assert len(rig.engine.active()) == 1 and rig.ctx.sms == []  # major: platform is up, it notifies
    rig.ctx.down_s = 61
    await rig.tick(1)
    assert sorted(n for n, _ in rig.ctx.sms) == ["+8613800000001", "+8613800000002"]  # gas-401 has no relative


async def test_a_failing_sounder_becomes_one_fault_event_and_sms_still_go(rig):
    rig.ctx.actuate_error = ModbusDeviceError(10, 4)
    await smoke(rig)
    assert len(rig.ctx.sms) == 3
    faults = rig.outbox.records("event.fault")
    assert [(d, b["code"]) for _, _, d, b in faults] == [("guard-relay", "sounder_failed")]
    await rig.tick(1)  # retry not yet due (retry_s = 5): nothing new
    assert len(rig.outbox.records("event.fault")) == 1
    rig.ctx.actuate_error = None
    await rig.tick(5)
    assert rig.ctx.coil("sounder") is True and rig.ctx.coil("strobe") is True
    assert len(rig.outbox.records("event.fault")) == 1


async def test_modem_absent_is_retried_and_reported_once(rig):
    rig.ctx.modem_absent = True
    await smoke(rig)
    assert rig.ctx.sms == [] and rig.ctx.coil("sounder") is True
    assert [b["code"] for _, _, _, b in rig.outbox.records("event.fault")] == ["sms_failed"]
    rig.ctx.modem_absent = False
    await rig.tick(30)
    assert len(rig.ctx.sms) == 3


async def test_rate_limit_per_recipient_defers_a_second_alarm_never_drops_it(rig):
    await smoke(rig, "smoke-401")
    await smoke(rig, "smoke-502")  # same guard room and grid worker within min_interval_s
    numbers = [n for n, _ in rig.ctx.sms]
    assert numbers.count("+8613800000001") == 1 and numbers.count("+8613800000002") == 1
    assert rig.engine.escalation.counters["sms_deferred"] >= 2
    await rig.tick(rig.engine.escalation.limiter.min_interval_s + 1)
    numbers = [n for n, _ in rig.ctx.sms]
    assert numbers.count("+8613800000001") == 2 and numbers.count("+8613800000002") == 2
    texts = [t for n, t in rig.ctx.sms if n == "+8613800000001"]
    assert texts[0] != texts[1]  # two alarms, two messages


async def test_flapping_holds_the_clear_and_stops_the_record_storm(rig):
    for _ in range(10):
        await rig.engine.on_item(rig.feed.reading("gas-401", lel_pct=30))
        rig.clock.advance(5)
        await rig.engine.on_item(rig.feed.reading("gas-401", lel_pct=10))
        rig.clock.advance(5)
    await rig.settle()
    kinds = [k for _, k, _, _ in rig.outbox.records("alarm.")]
    assert kinds.count("alarm.raised") == 3 and kinds.count("alarm.cleared") == 2  # flap_max = 3
    (alarm,) = rig.engine.active()
    assert alarm.repeats == 7
    # The last clear request came at t=95 s; now is t=100 s: held until 95 + flap_hold_s (300).
    await rig.tick(294)
    assert len(rig.engine.active()) == 1
    await rig.tick(1)
    assert rig.engine.active() == []


async def test_manual_clear_lets_a_persisting_condition_raise_again(rig):
    await rig.engine.on_item(rig.feed.reading("gas-401", lel_pct=30))
    await rig.settle()
    (first,) = rig.engine.active()
    assert await rig.engine.clear(first.id, "cli:li") == "cleared"
    await rig.engine.on_item(rig.feed.reading("gas-401", lel_pct=31))
    await rig.settle()
    (second,) = rig.engine.active()
    assert second.id != first.id


async def test_commands_on_unknown_alarm_are_rejected(rig):
    for op in (rig.engine.ack, rig.engine.silence, rig.engine.clear):
        with pytest.raises(CommandRejected) as info:
            await op("nope", "cli:x")
        assert info.value.reason == "unknown_alarm"


async def test_ack_is_idempotent(rig):
    await smoke(rig)
    (alarm,) = rig.engine.active()
    assert await rig.engine.ack(alarm.id, "cli:a") == "acknowledged"
    assert await rig.engine.ack(alarm.id, "cli:b") == "already_acknowledged"
    await rig.settle()
    assert [k for _, k, _, _ in rig.outbox.records("alarm.")].count("alarm.acknowledged") == 1


async def test_a_store_error_delays_the_commit_but_loses_nothing(rig):
    rig.outbox.fail_next = StoreError("disk I/O error")
    await smoke(rig)
    assert rig.ctx.coil("sounder") is True  # the sounder did not wait for the store
    assert [k for _, k, _, _ in rig.outbox.records("alarm.")] == ["alarm.raised"]
    assert rig.engine.committer.counters["commit_failures"] == 1


async def test_sounder_pattern_pulses_and_stops_at_max_duration(tmp_path):
    notify = Notify(sounder=Sounder(device="guard-relay", on_s=1.0, off_s=1.0, max_duration_s=10))
    rig = Rig(tmp_path, notify=notify)
    await rig.engine.start()
    await smoke(rig)
    states = []
    for _ in range(12):
        await rig.tick(0.5)
        states.append(rig.ctx.coil("sounder"))
    assert states[:8] == [True, False, False, True, True, False, False, True]
    await rig.tick(5)
    assert rig.ctx.coil("sounder") is False and rig.ctx.coil("strobe") is True  # strobe until acknowledged
    await rig.engine.stop()


async def test_one_active_alarm_per_rule_and_device_is_also_enforced_by_sqlite(rig):
    import sqlite3

    await smoke(rig)
    row = rig.outbox.conn.execute("SELECT rule, device_id, raised, updated FROM alarm").fetchone()
    with pytest.raises(sqlite3.IntegrityError):
        rig.outbox.conn.execute(
            "INSERT INTO alarm (id, rule, device_id, severity, state, title, raised, updated, updated_wall_s)"
            " VALUES ('x', ?, ?, 0, 'raised', 't', ?, ?, 0)", row)


async def test_sms_policy_never_sends_nothing(tmp_path):
    rig = Rig(tmp_path, notify=Notify(sms=Sms(critical="never")))
    await rig.engine.start()
    await smoke(rig)
    await rig.tick(1000)
    assert rig.ctx.sms == []
    assert len(rig.engine.active()) == 1
    await rig.engine.stop()


async def test_sounder_goes_before_the_commit_and_nothing_reports_raised_before_it(rig):
    import threading

    logs: list[str] = []

    class Recorder:
        def __getattr__(self, level):
            return lambda event, **kw: logs.append(event)

    rig.engine.committer.log = Recorder()
    rig.outbox.gate = threading.Event()  # the fsync is slow
    kicks = rig.ctx.uplink_kicks
    await rig.engine.on_item(rig.feed.event("smoke-401", EventKind.ALARM, "smoke"))
    await async_wait_for(lambda: rig.ctx.coil("sounder") is True, 5, what="sounder on while the commit waits")
    assert rig.outbox.records("alarm.") == []
    assert "alarm_raised" not in logs and rig.ctx.uplink_kicks == kicks
    rig.outbox.gate.set()
    await rig.settle()
    assert [k for _, k, _, _ in rig.outbox.records("alarm.")] == ["alarm.raised"]
    assert logs.count("alarm_raised") == 1 and rig.ctx.uplink_kicks == kicks + 1


async def test_a_wall_clock_step_does_not_move_any_duration(tmp_path):
    rig = Rig(tmp_path, rule_dicts=(SMOKE, {**GAS, "for_s": 60}))
    await rig.engine.start()
    await rig.engine.on_item(rig.feed.reading("gas-401", lel_pct=30))
    await smoke(rig)
    rig.clock.step_wall(+7200)  # NTP sync jumps the wall clock two hours
    await rig.tick(1)
    assert [a.rule for a in rig.engine.active()] == ["smoke"]  # gas for_s not reached: 1 s of monotonic time
    assert "+8613800000003" not in [n for n, _ in rig.ctx.sms]  # no escalation either
    await rig.tick(59)
    assert sorted(a.rule for a in rig.engine.active()) == ["gas", "smoke"]
    await rig.engine.stop()


async def test_after_a_reboot_escalation_timers_resume_from_synced_wall_time(rig):
    await smoke(rig)
    sent = len(rig.ctx.sms)
    await rig.engine.stop()
    # Power cut: a new boot id, monotonic restarts, 200 s of wall time passed (both clocks synced).
    rig.clock = ManualClock(wall_s=rig.clock.wall() + 200, boot_id="second-boot")
    rig.feed.clock = rig.clock
    rig.engine = rig._engine()
    await rig.engine.start()
    await rig.settle()
    await rig.tick(99)
    assert len(rig.ctx.sms) == sent  # 299 s after the raise
    await rig.tick(1)
    assert [n for n, _ in rig.ctx.sms[sent:]] == ["+8613800000003"]


async def test_bad_values_and_unknown_devices_are_counted_not_raised(rig):
    await rig.engine.on_item(rig.feed.reading("gas-401", lel_pct="high"))
    await rig.engine.on_item(rig.feed.reading("gas-401", lel_pct="high"))
    await rig.engine.on_item(rig.feed.reading("not-configured", lel_pct=99))
    counters = rig.engine.health()["counters"]
    assert (counters["bad_value"], counters["unknown_device"]) == (2, 1)
    assert rig.engine.active() == []


async def test_pipeline_to_alarm_event_record_and_alarm_record_both_committed(rig):
    from gateway.pipeline import Pipeline

    pipe = Pipeline(rig.outbox, rig.engine, DEVICES, logsetup.get())
    task = asyncio.create_task(pipe.run())
    try:
        pipe.emit(rig.feed.event("smoke-401", EventKind.ALARM, "smoke"))
        await async_wait_for(lambda: rig.outbox.records("alarm.") and rig.outbox.records("event."), 5, what="both records")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert rig.ctx.coil("sounder") is True
    assert [k for _, k, _, _ in rig.outbox.records("event.")] == ["event.alarm"]


async def test_run_ticks_the_timers_and_cancellation_commits_what_is_queued(rig):
    task = asyncio.create_task(rig.engine.run())
    await smoke(rig)
    rig.clock.advance(300)
    await async_wait_for(lambda: "+8613800000003" in [n for n, _ in rig.ctx.sms], 5, what="tier 1 SMS from run()")
    (alarm,) = rig.engine.active()
    await rig.engine.ack(alarm.id, "cli:x")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [k for _, k, _, _ in rig.outbox.records("alarm.")][-1] == "alarm.acknowledged"
