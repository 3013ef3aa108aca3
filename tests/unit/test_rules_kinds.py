"""Every rule kind, table-driven: boundaries, hysteresis, durations (monotonic `now` passed in), clears."""

from __future__ import annotations

import pytest

from gateway.clock import ManualClock
from gateway.model import EventKind
from gateway.rules import kinds
from gateway.rules.match import BadValue
from tests.unit.rules_support import DEVICES, Feed, rules

TICK = object()


def run(rule_dict, steps, devices=DEVICES):
    """Feed (t, device_id, item-maker | TICK) steps to the rule's evaluator; return [(t, device, raise?)]."""
    clock = ManualClock()
    feed = Feed(clock)
    (ev,) = kinds.build(rules([rule_dict]), devices, 0.0)
    out = []
    for t, dev, what in steps:
        if what is TICK:
            sigs = ev.tick(t)
        else:
            sigs = ev.on_item(what(feed, dev), devices[dev], t)
        out += [(t, s.device_id, s.raise_) for s in sigs]
    return out


def r(dev, **values):
    return lambda feed, d: feed.reading(d, **values)


def e(kind, code=""):
    return lambda feed, d: feed.event(d, kind, code)


LOW_PRESSURE = {"kind": "threshold", "id": "low", "severity": "major", "types": ["hydrant"],
                "field": "pressure_mpa", "op": "<", "limit": 0.10, "clear": 0.14, "for_s": 60}
GAS = {"kind": "threshold", "id": "gas", "severity": "critical", "types": ["gas"],
       "field": "lel_pct", "op": ">=", "limit": 25, "clear": 20}

THRESHOLD_CASES = {
    "exactly_at_strict_limit_does_not_raise": (LOW_PRESSURE, [(0, "hydrant-1", r(0, pressure_mpa=0.10)), (100, "hydrant-1", TICK)], []),
    "below_for_less_than_duration_does_not_raise": (
        LOW_PRESSURE, [(0, "hydrant-1", r(0, pressure_mpa=0.05)), (59.9, "hydrant-1", TICK)], []),
    "below_for_the_duration_raises_on_tick": (
        LOW_PRESSURE, [(0, "hydrant-1", r(0, pressure_mpa=0.05)), (60, "hydrant-1", TICK)], [(60, "hydrant-1", True)]),
    "a_recovery_inside_the_duration_restarts_it": (
        LOW_PRESSURE,
        [(0, "hydrant-1", r(0, pressure_mpa=0.05)), (30, "hydrant-1", r(0, pressure_mpa=0.12)),
         (40, "hydrant-1", r(0, pressure_mpa=0.05)), (61, "hydrant-1", TICK), (100, "hydrant-1", TICK)],
        [(100, "hydrant-1", True)]),
    "inside_the_hysteresis_band_does_not_clear": (
        LOW_PRESSURE,
        [(0, "hydrant-1", r(0, pressure_mpa=0.05)), (60, "hydrant-1", TICK), (70, "hydrant-1", r(0, pressure_mpa=0.13)),
         (80, "hydrant-1", r(0, pressure_mpa=0.139)), (200, "hydrant-1", TICK)],
        [(60, "hydrant-1", True)]),
    "at_the_clear_level_clears": (
        LOW_PRESSURE,
        [(0, "hydrant-1", r(0, pressure_mpa=0.05)), (60, "hydrant-1", TICK), (70, "hydrant-1", r(0, pressure_mpa=0.14))],
        [(60, "hydrant-1", True), (70, "hydrant-1", False)]),
    "inclusive_limit_raises_at_equality_without_duration": (
        GAS, [(0, "gas-401", r(0, lel_pct=24.99)), (1, "gas-401", r(0, lel_pct=25))], [(1, "gas-401", True)]),
    "hovering_at_limit_raises_once": (
        GAS,
        [(0, "gas-401", r(0, lel_pct=25)), (1, "gas-401", r(0, lel_pct=24)), (2, "gas-401", r(0, lel_pct=26)),
         (3, "gas-401", r(0, lel_pct=21)), (4, "gas-401", r(0, lel_pct=20))],
        [(0, "gas-401", True), (4, "gas-401", False)]),
    "other_fields_and_events_are_ignored": (
        GAS, [(0, "gas-401", r(0, battery_pct=3)), (1, "gas-401", e(EventKind.ALARM, "gas_high"))], []),
}


@pytest.mark.parametrize("rule,steps,expected", THRESHOLD_CASES.values(), ids=THRESHOLD_CASES.keys())
def test_threshold(rule, steps, expected):
    assert run(rule, steps) == expected


def test_threshold_clear_for_s_holds_the_clear():
    rule = {**GAS, "clear_for_s": 30}
    steps = [(0, "gas-401", r(0, lel_pct=30)), (10, "gas-401", r(0, lel_pct=5)), (39, "gas-401", TICK), (40, "gas-401", TICK)]
    assert run(rule, steps) == [(0, "gas-401", True), (40, "gas-401", False)]


def test_threshold_non_numeric_value_is_rejected_with_bad_value():
    (ev,) = kinds.build(rules([GAS]), DEVICES, 0.0)
    feed = Feed(ManualClock())
    for bad in ("25", float("nan"), True):
        with pytest.raises(BadValue):
            ev.on_item(feed.reading("gas-401", lel_pct=bad), DEVICES["gas-401"], 0)


SMOKE = {"kind": "event", "id": "smoke", "severity": "critical", "types": ["smoke"], "events": ["alarm"], "codes": ["smoke"]}
EVENT_CASES = {
    "matching_kind_and_code_raises": (SMOKE, [(0, "smoke-401", e(EventKind.ALARM, "smoke"))], [(0, "smoke-401", True)]),
    "other_code_is_ignored": (SMOKE, [(0, "smoke-401", e(EventKind.ALARM, "heat"))], []),
    "other_kind_is_ignored": (SMOKE, [(0, "smoke-401", e(EventKind.TAMPER, "smoke"))], []),
    "bare_alarm_cleared_clears": (
        SMOKE, [(0, "smoke-401", e(EventKind.ALARM, "smoke")), (5, "smoke-401", e(EventKind.ALARM_CLEARED))],
        [(0, "smoke-401", True), (5, "smoke-401", False)]),
    "cleared_with_another_code_does_not_clear": (
        SMOKE, [(0, "smoke-401", e(EventKind.ALARM, "smoke")), (5, "smoke-401", e(EventKind.ALARM_CLEARED, "heat"))],
        [(0, "smoke-401", True)]),
    "any_code_when_codes_empty": (
        {**SMOKE, "codes": [], "events": ["fault"]}, [(0, "smoke-401", e(EventKind.FAULT, "chamber")),
                                                      (1, "smoke-401", e(EventKind.FAULT_CLEARED, "chamber"))],
        [(0, "smoke-401", True), (1, "smoke-401", False)]),
}


@pytest.mark.parametrize("rule,steps,expected", EVENT_CASES.values(), ids=EVENT_CASES.keys())
def test_event(rule, steps, expected):
    assert run(rule, steps) == expected


FALL = {"kind": "rate", "id": "fall", "severity": "major", "types": ["hydrant"], "field": "pressure_mpa",
        "direction": "fall", "delta": 0.2, "window_s": 30}
RATE_CASES = {
    "fall_of_exactly_delta_does_not_raise": (
        FALL, [(0, "hydrant-1", r(0, pressure_mpa=0.5)), (10, "hydrant-1", r(0, pressure_mpa=0.3))], []),
    "fall_over_delta_within_window_raises": (
        FALL, [(0, "hydrant-1", r(0, pressure_mpa=0.5)), (29, "hydrant-1", r(0, pressure_mpa=0.29))], [(29, "hydrant-1", True)]),
    "same_fall_slower_than_window_does_not_raise": (
        FALL, [(0, "hydrant-1", r(0, pressure_mpa=0.5)), (20, "hydrant-1", r(0, pressure_mpa=0.4)),
               (40, "hydrant-1", r(0, pressure_mpa=0.29))], []),
    "a_rise_does_not_raise_a_fall_rule": (
        FALL, [(0, "hydrant-1", r(0, pressure_mpa=0.1)), (5, "hydrant-1", r(0, pressure_mpa=0.5))], []),
    "any_direction_raises_on_rise": (
        {**FALL, "direction": "any"}, [(0, "hydrant-1", r(0, pressure_mpa=0.1)), (5, "hydrant-1", r(0, pressure_mpa=0.5))],
        [(5, "hydrant-1", True)]),
    "clears_after_a_quiet_window": (
        FALL, [(0, "hydrant-1", r(0, pressure_mpa=0.5)), (5, "hydrant-1", r(0, pressure_mpa=0.2)),
               (34, "hydrant-1", TICK), (35, "hydrant-1", TICK)],
        [(5, "hydrant-1", True), (35, "hydrant-1", False)]),
}


@pytest.mark.parametrize("rule,steps,expected", RATE_CASES.values(), ids=RATE_CASES.keys())
def test_rate(rule, steps, expected):
    assert run(rule, steps) == expected


OFFLINE = {"kind": "offline", "id": "off", "severity": "major", "types": ["smoke"], "heartbeat_factor": 2, "grace_s": 60}
# smoke devices: heartbeat 3600 s -> limit 7260 s after the last frame (or after start).
OFFLINE_CASES = {
    "silent_up_to_the_limit_is_online": (OFFLINE, [(7260, "smoke-401", TICK)], []),
    "silent_past_the_limit_goes_offline_once": (
        OFFLINE, [(7260.5, "smoke-401", TICK), (9000, "smoke-401", TICK)],
        [(7260.5, "smoke-401", True), (7260.5, "smoke-502", True), (7260.5, "smoke-b3", True)]),
    "a_frame_resets_the_timer": (
        OFFLINE, [(7000, "smoke-401", r(0, battery_pct=90)), (7261, "smoke-401", TICK)],
        [(7261, "smoke-502", True), (7261, "smoke-b3", True)]),
    "next_frame_clears": (
        OFFLINE, [(8000, "smoke-401", TICK), (8001, "smoke-401", e(EventKind.HEARTBEAT))],
        [(8000, "smoke-401", True), (8000, "smoke-502", True), (8000, "smoke-b3", True), (8001, "smoke-401", False)]),
    "driver_offline_event_raises_and_online_clears": (
        {**OFFLINE, "types": ["hydrant"]},
        [(1, "hydrant-1", e(EventKind.OFFLINE)), (2, "hydrant-1", e(EventKind.OFFLINE)), (3, "hydrant-1", e(EventKind.ONLINE)),
         (99999, "hydrant-1", TICK)],
        [(1, "hydrant-1", True), (3, "hydrant-1", False)]),
}


@pytest.mark.parametrize("rule,steps,expected", OFFLINE_CASES.values(), ids=OFFLINE_CASES.keys())
def test_offline(rule, steps, expected):
    assert run(rule, steps) == expected


FIRE = {"kind": "correlate", "id": "fire-confirmed", "severity": "critical", "within_s": 120,
        "a": {"types": ["water_flow"], "field": "flow_lps", "op": ">", "value": 0},
        "b": {"types": ["smoke"], "event": "alarm", "code": "smoke"}}
MISUSE = {**FIRE, "id": "hydrant-misuse", "severity": "minor", "mode": "a_without_b"}
CORRELATE_CASES = {
    "flow_then_smoke_same_building_within_window": (
        FIRE, [(0, "flow-2", r(0, flow_lps=3.0)), (120, "smoke-401", e(EventKind.ALARM, "smoke"))], [(120, "flow-2", True)]),
    "smoke_then_flow_within_window": (
        FIRE, [(0, "smoke-401", e(EventKind.ALARM, "smoke")), (100, "flow-2", r(0, flow_lps=1.0))], [(100, "flow-2", True)]),
    "smoke_too_long_before_flow": (
        FIRE, [(0, "smoke-401", e(EventKind.ALARM, "smoke")), (120.5, "flow-2", r(0, flow_lps=1.0))], []),
    "smoke_in_another_building": (
        FIRE, [(0, "flow-2", r(0, flow_lps=3.0)), (10, "smoke-b3", e(EventKind.ALARM, "smoke"))], []),
    "flow_stopping_clears": (
        FIRE, [(0, "flow-2", r(0, flow_lps=3.0)), (10, "smoke-401", e(EventKind.ALARM, "smoke")),
               (20, "flow-2", r(0, flow_lps=0.0))], [(10, "flow-2", True), (20, "flow-2", False)]),
    "misuse_flow_without_smoke_raises_after_window": (
        MISUSE, [(0, "flow-2", r(0, flow_lps=3.0)), (119, "flow-2", TICK), (120, "flow-2", TICK)], [(120, "flow-2", True)]),
    "misuse_not_raised_when_smoke_follows": (
        MISUSE, [(0, "flow-2", r(0, flow_lps=3.0)), (60, "smoke-401", e(EventKind.ALARM, "smoke")), (200, "flow-2", TICK)], []),
    "misuse_not_raised_when_smoke_came_first": (
        MISUSE, [(0, "smoke-401", e(EventKind.ALARM, "smoke")), (30, "flow-2", r(0, flow_lps=3.0)), (300, "flow-2", TICK)], []),
    "misuse_raised_when_smoke_is_in_another_building": (
        MISUSE, [(0, "flow-2", r(0, flow_lps=3.0)), (60, "smoke-b3", e(EventKind.ALARM, "smoke")), (120, "flow-2", TICK)],
        [(120, "flow-2", True)]),
    "courtyard_scope_correlates_across_buildings": (
        {**FIRE, "scope": "courtyard"}, [(0, "flow-2", r(0, flow_lps=3.0)), (10, "smoke-b3", e(EventKind.ALARM, "smoke"))],
        [(10, "flow-2", True)]),
}


@pytest.mark.parametrize("rule,steps,expected", CORRELATE_CASES.values(), ids=CORRELATE_CASES.keys())
def test_correlate(rule, steps, expected):
    assert run(rule, steps) == expected


def test_index_dispatches_only_matching_devices():
    evs = kinds.build(rules([SMOKE, FIRE, {**GAS, "types": [], "devices": ["gas-401"]}]), DEVICES, 0.0)
    idx = kinds.index(evs, DEVICES)
    assert [e.rule.id for e in idx["smoke-401"]] == ["smoke", "fire-confirmed"]
    assert [e.rule.id for e in idx["flow-2"]] == ["fire-confirmed"]
    assert [e.rule.id for e in idx["gas-401"]] == ["gas"]
    assert idx["guard-relay"] == []



@pytest.mark.parametrize("direction", ["fall", "rise", "any"])
def test_rate_window_extremes_match_a_brute_force_scan(direction):
    """The O(1) monotonic-queue window gives the same change as scanning every sample in the window."""
    from hypothesis import given, settings
    from hypothesis import strategies as hst

    from gateway.rules.rate import RateEvaluator, _State

    @settings(max_examples=200, deadline=None)
    @given(hst.lists(hst.tuples(hst.floats(0, 20), hst.floats(0, 1)), min_size=1, max_size=60))
    def check(steps):
        ev = RateEvaluator(rules([{**FALL, "direction": direction}])[0])
        st, t, seen = _State(), 0.0, []
        for dt, v in steps:
            t += dt
            window = [w for s, w in seen if t - s <= FALL["window_s"]]
            fall = max(window) - v if window else 0.0
            rise = v - min(window) if window else 0.0
            assert ev._move(st, t, v) == {"fall": fall, "rise": rise, "any": max(fall, rise)}[direction]
            seen.append((t, v))

    check()
