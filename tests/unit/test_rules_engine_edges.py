"""Rule engine edges beside test_rules_engine.py (same rig: a real SQLite file, a fake ActionContext, a
ManualClock): the ALARM record body the platform receives for every transition, the history window,
the button with nothing to acknowledge, devices no rule watches, a correlate rule end to end, several
alarms on one sounder, and the health counters an operator reads."""

from __future__ import annotations

import pytest

from gateway.model import AlarmState, EventKind
from tests.unit.test_rules_engine import GAS, SMOKE, Rig

FIRE = {"kind": "correlate", "id": "fire-confirmed", "severity": "critical", "title": "火情确认", "within_s": 120,
        "a": {"types": ["water_flow"], "field": "flow_lps", "op": ">", "value": 0},
        "b": {"types": ["smoke"], "event": "alarm", "code": "smoke"}}


@pytest.fixture
async def rig(tmp_path):
    r = Rig(tmp_path, rule_dicts=(SMOKE, GAS, FIRE))
    await r.engine.start()
    await r.settle()
    r.ctx.commands.clear()
    yield r
    await r.engine.stop()
    r.outbox.close()


async def _event(rig, device: str, kind: EventKind, code: str = "") -> None:
    await rig.engine.on_item(rig.feed.event(device, kind, code))
    await rig.settle()


async def _reading(rig, device: str, **values) -> None:
    await rig.engine.on_item(rig.feed.reading(device, **values))
    await rig.settle()


async def test_every_transition_record_carries_the_platform_fields(rig):
    await _event(rig, "smoke-401", EventKind.ALARM, "smoke")
    (alarm,) = rig.engine.active()
    await rig.engine.ack(alarm.id, "platform:ops")
    await rig.settle()
    await _event(rig, "smoke-401", EventKind.ALARM_CLEARED)  # the detector's own all-clear
    bodies = [body for _seq, _kind, _dev, body in rig.outbox.records("alarm.")]
    assert [b["transition"] for b in bodies] == ["raised", "acknowledged", "cleared"]
    for b in bodies:
        assert b["alarm_id"] == alarm.id and b["rule"] == "smoke" and b["rule_kind"] == "event"
        assert (b["type"], b["resident"], b["location"]) == ("smoke", "elderly_alone", {"building": "2", "unit": "1", "room": "401"})
        assert b["raised_wall_s"] == alarm.raised.wall_s and b["raised_synced"] is True and b["title"] == "烟感报警"
    assert [b["by"] for b in bodies] == ["", "platform:ops", "auto"]
    assert [b["state"] for b in bodies] == ["raised", "acknowledged", "cleared"]


async def test_history_keeps_cleared_alarms_inside_the_window_only(rig):
    await _event(rig, "smoke-401", EventKind.ALARM, "smoke")
    await _event(rig, "smoke-401", EventKind.ALARM_CLEARED)
    assert [a.state for a in rig.engine.history(3600)] == [AlarmState.CLEARED]
    rig.clock.advance(3601)
    assert rig.engine.history(3600) == []
    await _event(rig, "smoke-502", EventKind.ALARM, "smoke")
    assert [a.device_id for a in rig.engine.history(60)] == ["smoke-502"]  # the active one is always listed


async def test_the_button_with_nothing_to_acknowledge_changes_nothing(rig):
    await _event(rig, "guard-relay", EventKind.BUTTON, "ack_button")
    assert rig.engine.health()["counters"]["button_presses"] == 1
    assert rig.outbox.records("alarm.") == [] and rig.ctx.sms == []


async def test_items_from_a_device_no_rule_watches_are_counted_and_ignored(rig):
    await _reading(rig, "hydrant-1", pressure_mpa=0.01)  # no hydrant rule in this rig
    counters = rig.engine.health()["counters"]
    assert counters["items"] >= 1 and counters.get("unknown_device", 0) == 0 and rig.engine.active() == []


async def test_a_correlate_rule_raises_on_the_flow_device_and_clears_when_the_flow_stops(rig):
    await _reading(rig, "flow-2", flow_lps=3.0)
    rig.clock.advance(30)
    await _event(rig, "smoke-502", EventKind.ALARM, "smoke")  # same building, within 120 s
    fire = [a for a in rig.engine.active() if a.rule == "fire-confirmed"]
    assert [a.device_id for a in fire] == ["flow-2"] and fire[0].title == "火情确认"
    await _reading(rig, "flow-2", flow_lps=0.0)
    assert [a.rule for a in rig.engine.active()] == ["smoke"]
    kinds = [(b["rule"], b["transition"]) for _s, _k, _d, b in rig.outbox.records("alarm.")]
    assert ("fire-confirmed", "raised") in kinds and ("fire-confirmed", "cleared") in kinds


async def test_the_sounder_stays_on_until_the_last_ringing_alarm_is_acknowledged(rig):
    await _event(rig, "smoke-401", EventKind.ALARM, "smoke")
    await _event(rig, "smoke-502", EventKind.ALARM, "smoke")
    first, second = rig.engine.active()
    await rig.engine.ack(first.id, "guard")
    await rig.settle()
    assert rig.ctx.coil("sounder") is True  # the other flat's alarm still rings
    await rig.engine.ack(second.id, "guard")
    await rig.settle()
    assert rig.ctx.coil("sounder") is False


async def test_a_major_alarm_without_the_sounder_action_never_rings_and_texts_only_when_the_uplink_is_down(rig):
    await _reading(rig, "gas-401", lel_pct=30)
    (alarm,) = rig.engine.active()
    assert alarm.rule == "gas" and rig.ctx.coil("sounder") in (None, False)
    assert rig.ctx.sms == []  # major: "uplink_down" policy, and the platform is reachable
    rig.ctx.down_s = 61.0  # the uplink has been down past uplink_down_after_s (60 s)
    await rig.tick(1.0)
    assert rig.ctx.sms and all("燃气泄漏" in text for _n, text in rig.ctx.sms)


async def test_health_reports_active_alarms_and_the_commit_queue(rig):
    await _event(rig, "smoke-401", EventKind.ALARM, "smoke")
    await _event(rig, "smoke-401", EventKind.ALARM, "smoke")  # a repeat
    h = rig.engine.health()
    assert h["active"] == 1 and h["commit_queue"] == 0
    assert (h["counters"]["raised"], h["counters"]["repeats"]) == (1, 1)


@pytest.mark.parametrize("kind", ["event", "threshold", "rate", "offline", "correlate"])
def test_rule_kind_in_the_record_is_the_rules_tag(kind):
    # GB/T 26875 picks the fire-alarm / fault / supervisory bit from rule_kind (gb26875/mapping.py):
    # an empty kind sent every rule alarm to the fire centre as merely supervisory.
    from gateway.rules.engine import rule_kind
    from tests.unit.rules_support import rules

    base = {"kind": kind, "id": "r", "severity": "critical"}
    extra = {"event": {"events": ["alarm"]}, "threshold": {"field": "x", "op": ">", "limit": 1},
             "rate": {"field": "x", "direction": "fall", "delta": 1, "window_s": 30}, "offline": {},
             "correlate": {"a": {"event": "alarm"}, "b": {"event": "fault"}}}[kind]
    (rule,) = rules([{**base, **extra}])
    assert rule_kind(rule) == kind
    assert rule_kind(None) == ""
