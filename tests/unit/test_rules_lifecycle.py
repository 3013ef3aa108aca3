"""The alarm book (gateway/rules/lifecycle.py) on its own: one active alarm per (rule, device), repeats
only counted, acknowledge and silence idempotent, clears by command and by condition, flapping holds
the automatic clear until the condition stayed clear for flap_hold_s, snapshots that later changes do
not rewrite, and commands on unknown alarms refused with a reason."""

from __future__ import annotations

import pytest

from gateway.clock import ManualClock
from gateway.errors import CommandRejected
from gateway.model import AlarmState, Severity
from gateway.rules.lifecycle import AlarmBook, new_alarm_id
from tests.unit.rules_support import rules

SMOKE, GAS, LOW = rules([
    {"kind": "event", "id": "smoke", "severity": "critical", "title": "烟感报警", "types": ["smoke"], "events": ["alarm"],
     "flap_max": 3, "flap_window_s": 60, "flap_hold_s": 30},
    {"kind": "event", "id": "gas", "severity": "critical", "types": ["gas"], "events": ["alarm"], "auto_clear": False},
    {"kind": "threshold", "id": "low", "severity": "major", "types": ["hydrant"], "field": "pressure_mpa", "op": "<", "limit": 0.1},
])


@pytest.fixture
def book() -> AlarmBook:
    return AlarmBook()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_a_raise_then_repeats_keep_one_active_alarm(book, clock):
    first = book.raise_(SMOKE, "smoke-401", clock.now(), 0.0, {"code": "smoke"}, sounds=True)
    assert first.kind == "raised" and first.alarm.state == AlarmState.RAISED and first.alarm.title == "烟感报警"
    again = book.raise_(SMOKE, "smoke-401", clock.now(), 1.0, {"code": "smoke", "repeated": True}, sounds=True)
    assert again.kind == "repeated" and again.alarm.id == first.alarm.id and again.alarm.repeats == 1
    assert first.alarm.repeats == 0  # a transition is a snapshot: later changes do not rewrite it
    assert [a.id for a in book.active()] == [first.alarm.id]
    assert book.counters == {"raised": 1, "repeats": 1, "cleared": 0, "clears_held": 0}


def test_each_device_and_each_rule_has_its_own_alarm(book, clock):
    a = book.raise_(SMOKE, "smoke-401", clock.now(), 0.0, {}, sounds=True)
    b = book.raise_(SMOKE, "smoke-502", clock.now(), 0.0, {}, sounds=True)
    c = book.raise_(GAS, "smoke-401", clock.now(), 0.0, {}, sounds=True)
    assert len({a.alarm.id, b.alarm.id, c.alarm.id}) == 3 and len(book.active()) == 3


def test_active_is_ordered_by_severity_then_raise_time(book, clock):
    low = book.raise_(LOW, "hydrant-1", clock.now(), 0.0, {}, sounds=False)
    clock.advance(5)
    smoke = book.raise_(SMOKE, "smoke-401", clock.now(), 5.0, {}, sounds=True)
    clock.advance(5)
    gas = book.raise_(GAS, "gas-401", clock.now(), 10.0, {}, sounds=True)
    assert Severity(SMOKE.level) < Severity(LOW.level)  # critical sorts first
    assert [a.id for a in book.active()] == [smoke.alarm.id, gas.alarm.id, low.alarm.id]


def test_acknowledge_is_idempotent_and_silence_only_applies_to_a_raised_alarm(book, clock):
    t = book.raise_(SMOKE, "smoke-401", clock.now(), 0.0, {}, sounds=True)
    silenced = book.silence(t.alarm.id, "guard", clock.now())
    assert silenced is not None and silenced.kind == "silenced" and silenced.alarm.state == AlarmState.RAISED
    assert book.silence(t.alarm.id, "guard", clock.now()) is None  # once
    ack = book.ack(t.alarm.id, "platform:ops", clock.now())
    assert ack is not None and ack.alarm.state == AlarmState.ACKNOWLEDGED and ack.alarm.acknowledged_by == "platform:ops"
    assert book.ack(t.alarm.id, "button", clock.now()) is None  # the button held over several polls
    t2 = book.raise_(SMOKE, "smoke-502", clock.now(), 0.0, {}, sounds=True)
    book.ack(t2.alarm.id, "guard", clock.now())
    assert book.silence(t2.alarm.id, "guard", clock.now()) is None  # acknowledged: nothing left to silence


def test_clear_by_command_ends_the_alarm_and_a_second_clear_is_refused(book, clock):
    t = book.raise_(GAS, "gas-401", clock.now(), 0.0, {}, sounds=True)
    end = book.clear(t.alarm.id, "platform:ops", clock.now())
    assert end.kind == "cleared" and end.alarm.state == AlarmState.CLEARED and end.alarm.cleared_by == "platform:ops"
    assert book.active() == []
    for command in (book.clear, book.ack, book.silence):
        with pytest.raises(CommandRejected) as exc:
            command(t.alarm.id, "x", clock.now())
        assert exc.value.reason == "unknown_alarm"
    again = book.raise_(GAS, "gas-401", clock.now(), 1.0, {}, sounds=True)
    assert again.kind == "raised" and again.alarm.id != t.alarm.id  # a new alarm, a new id


def test_auto_clear_respects_the_rule_and_needs_an_active_alarm(book, clock):
    assert book.auto_clear(SMOKE, "smoke-401", clock.now(), 0.0, {}) is None  # nothing active
    book.raise_(GAS, "gas-401", clock.now(), 0.0, {}, sounds=True)
    assert book.auto_clear(GAS, "gas-401", clock.now(), 1.0, {}) is None  # auto_clear = false: by command only
    book.raise_(SMOKE, "smoke-401", clock.now(), 0.0, {}, sounds=True)
    end = book.auto_clear(SMOKE, "smoke-401", clock.now(), 1.0, {"kind": "alarm_cleared"})
    assert end is not None and end.alarm.cleared_by == "auto" and end.detail == {"kind": "alarm_cleared"}


def _cycle(book: AlarmBook, clock: ManualClock, now: float):
    book.raise_(SMOKE, "smoke-401", clock.now(), now, {}, sounds=True)
    return book.auto_clear(SMOKE, "smoke-401", clock.now(), now + 1, {})


def test_flapping_holds_the_clear_until_the_condition_stayed_clear(book, clock):
    assert _cycle(book, clock, 0) is not None and _cycle(book, clock, 10) is not None
    assert _cycle(book, clock, 20) is None  # third raise within 60 s: the clear is held, the alarm stays
    assert len(book.active()) == 1 and book.counters["clears_held"] == 1
    rules_by_id = {"smoke": SMOKE}
    assert book.held_clears_due(rules_by_id, clock.now(), 21 + 29) == []
    ((end, _act),) = book.held_clears_due(rules_by_id, clock.now(), 21 + 30)
    assert end.kind == "cleared" and end.detail == {"flapping": True} and book.active() == []


def test_a_repeat_cancels_a_held_clear(book, clock):
    for t in (0, 10):
        _cycle(book, clock, t)
    assert _cycle(book, clock, 20) is None
    book.raise_(SMOKE, "smoke-401", clock.now(), 25, {}, sounds=True)  # the smoke is back
    assert book.held_clears_due({"smoke": SMOKE}, clock.now(), 1000) == []  # no stale clear fires
    assert len(book.active()) == 1


def test_raises_spread_beyond_the_window_are_not_flapping(book, clock):
    for t in (0, 40, 80, 120):
        assert _cycle(book, clock, t) is not None  # never 3 raises within 60 s


def test_escalate_records_the_tier_and_restore_reinstates_an_alarm(book, clock):
    t = book.raise_(SMOKE, "smoke-401", clock.now(), 0.0, {}, sounds=True)
    act = book.get(t.alarm.id)
    esc = book.escalate(act, 0, clock.now(), {"roles": ["grid_worker"]})
    assert esc.kind == "escalated" and esc.detail == {"tier": 0, "roles": ["grid_worker"]} and act.tier == 1
    other = AlarmBook()
    other.restore(act)  # after a restart, from the store
    assert other.get(t.alarm.id) is act and other.active()[0].id == t.alarm.id
    assert other.raise_(SMOKE, "smoke-401", clock.now(), 1.0, {}, sounds=True).kind == "repeated"


def test_alarm_ids_are_short_and_unique():
    ids = {new_alarm_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
