"""`inactivity` rules (issue 22) on the injected clock across 12 h and 24 h windows: activity just inside
and just outside the window, water volume deltas, away mode, quiet and active hours, a source offline."""

from __future__ import annotations

import pytest

from gateway.clock import ManualClock
from gateway.model import DeviceType, EventKind
from gateway.rules.inactivity import InactivityEvaluator, active_seconds, parse_hours
from tests.unit.rules_support import Feed, device, rules

T0 = 1796083200.0  # 2026-12-01 08:00 Asia/Shanghai
H = 3600.0
DOOR = device("door-401", DeviceType.SMOKE, profile="ws301", heartbeat_s=0)
WATER = device("water-401", DeviceType.WATER_FLOW, profile="water_meter", heartbeat_s=0)
OTHER = device("door-502", DeviceType.SMOKE, room="502", profile="ws301")


def _rule(**kw):
    base = {
        "kind": "inactivity", "id": "welfare", "severity": "major", "title": "独居老人长时间无活动",
        "sources": [
            {"profiles": ["ws301"], "activity": "change", "field": "door"},
            {"profiles": ["water_meter"], "activity": "volume", "field": "total_m3", "litres_per_unit": 1000, "min_l": 10},
        ],
    }
    return rules([{**base, **kw}])[0]


def _setup(devices=(DOOR, WATER, OTHER), **kw):
    clock = ManualClock(wall_s=T0)
    ev = InactivityEvaluator(_rule(**kw), list(devices), clock.monotonic(), clock)
    return clock, ev, Feed(clock)


def _step(clock, ev, hours, step_h=0.5):
    """Advance the clock and tick every step_h; every signal seen."""
    out, left = [], hours
    while left > 1e-9:
        dt = min(step_h, left)
        clock.advance(dt * H)
        left -= dt
        out += ev.tick(clock.monotonic())
    return out


def _feed(ev, clock, item):
    dev = {d.id: d for d in (DOOR, WATER, OTHER)}[item.device_id]
    return ev.on_item(item, dev, clock.monotonic())


def test_flats_are_grouped_by_location_and_the_alarm_goes_on_the_first_source():
    _, ev, _ = _setup()
    assert sorted(ev.flats) == ["2-1-401", "2-1-502"]
    assert ev.flats["2-1-401"].anchor == "door-401"


@pytest.mark.parametrize("window_h", [12, 24])
def test_activity_just_inside_the_window_keeps_quiet_just_outside_raises(window_h):
    clock, ev, feed = _setup(window_h=window_h)
    _feed(ev, clock, feed.reading("door-401", door=0))
    _feed(ev, clock, feed.reading("door-502", door=0))
    assert _step(clock, ev, window_h - 0.5) == []
    _feed(ev, clock, feed.reading("door-401", door=1))  # 401 opens the door just inside the window
    signals = _step(clock, ev, 0.5 + 1 / 60, step_h=1 / 60)
    assert [(s.raise_, s.device_id) for s in signals] == [(True, "door-502")]  # 502 did not: just outside
    detail = signals[0].detail
    assert detail["flat"] == "2-1-502" and detail["inactive_h"] >= window_h and "无活动" in detail["reason"]
    assert detail["sources"] == ["door-502"] and detail["since_wall_s"] == pytest.approx(T0, abs=1)


def test_next_activity_clears_and_a_repeated_value_is_no_activity():
    clock, ev, feed = _setup()
    _feed(ev, clock, feed.reading("door-401", door=0))
    assert [s.device_id for s in _step(clock, ev, 12.5) if s.raise_] == ["door-401", "door-502"]
    assert _feed(ev, clock, feed.reading("door-401", door=0)) == []  # same value: no change
    cleared = _feed(ev, clock, feed.reading("door-401", door=1))
    assert [(s.raise_, s.device_id) for s in cleared] == [(False, "door-401")]


def test_water_under_10_litres_in_12_hours_is_no_activity_10_litres_is():
    clock, ev, feed = _setup(devices=(DOOR, WATER))
    total = 100.0
    for _ in range(11):  # 0.9 L an hour: a dripping tap, 9.9 L in 11 h
        _feed(ev, clock, feed.reading("water-401", total_m3=total))
        total += 0.0009
        assert _step(clock, ev, 1.0) == []
    signals = _step(clock, ev, 1.1)
    assert [s.raise_ for s in signals] == [True] and signals[0].detail["water_l.water-401"] < 10
    cleared = _feed(ev, clock, feed.reading("water-401", total_m3=total + 0.012))  # a shower
    assert [s.raise_ for s in cleared] == [False]


def test_away_mode_holds_the_alarm_and_the_window_restarts_on_return():
    clock, ev, _ = _setup(devices=(DOOR,))
    assert ev.set_away("2-1-401", T0 + 48 * H) and not ev.set_away("9-9-999", T0 + H)
    assert _step(clock, ev, 48) == []
    assert _step(clock, ev, 11) == []  # back home: a fresh 12 h window from the return
    assert [s.raise_ for s in _step(clock, ev, 1.5)] == [True]


def test_quiet_hours_hold_the_alarm_until_they_end():
    # 12 h from 08:00 is 20:00, inside quiet hours 19:00-07:00: the alarm waits until 07:00.
    clock, ev, _ = _setup(devices=(DOOR,), quiet_hours="19:00-07:00")
    assert _step(clock, ev, 22.5) == []
    signals = _step(clock, ev, 1.0)
    assert [s.raise_ for s in signals] == [True] and ev.counters["held_quiet"] > 0


def test_only_active_hours_count_towards_the_window():
    # Active 07:00-22:00 (15 h a day): from 08:00, 12 active hours end at 20:00 the same day;
    # a 24 h window needs 14 active hours ... 08:00+24 active h = 22:00 + 9 h next day = 17:00 next day.
    clock, ev, _ = _setup(devices=(DOOR,), window_h=24, active_hours="07:00-22:00")
    assert _step(clock, ev, 32.5) == []  # next day 16:30: 14 + 9.5 = 23.5 active hours
    assert [s.raise_ for s in _step(clock, ev, 1.0)] == [True]


def test_active_seconds_wraps_midnight():
    tz = __import__("zoneinfo").ZoneInfo("Asia/Shanghai")
    night = parse_hours("22:00-06:00")
    assert active_seconds(T0, T0 + 24 * H, night, tz) == pytest.approx(8 * H)
    assert active_seconds(T0, T0 + 24 * H, parse_hours("00:00-24:00"), tz) == 24 * H


def test_a_source_offline_is_a_device_fault_not_inactivity():
    clock, ev, feed = _setup(devices=(DOOR, WATER))
    _feed(ev, clock, feed.event("water-401", EventKind.OFFLINE))
    assert _step(clock, ev, 13) == [] and ev.counters["held_offline"] > 0
    _feed(ev, clock, feed.reading("water-401", total_m3=5.0))  # back: a sign of life, not activity
    assert [s.raise_ for s in _step(clock, ev, 0.5)] == [True]


def test_a_silent_heartbeat_source_is_offline_too():
    door = device("door-401", DeviceType.SMOKE, profile="ws301", heartbeat_s=3600)
    clock, ev, _ = _setup(devices=(door,))
    assert _step(clock, ev, 13) == []
    assert ev.counters["held_offline"] > 0


def test_heartbeats_and_replayed_frames_are_not_activity():
    clock, ev, feed = _setup(devices=(DOOR,), sources=[{"profiles": ["ws301"], "activity": "frame"}])
    _step(clock, ev, 11)
    _feed(ev, clock, feed.event("door-401", EventKind.HEARTBEAT))
    _feed(ev, clock, feed.event("door-401", EventKind.SECURITY, "replay_suspect"))
    assert [s.raise_ for s in _step(clock, ev, 1.5)] == [True]
    assert [s.raise_ for s in _feed(ev, clock, feed.event("door-401", EventKind.TAMPER))] == [False]
