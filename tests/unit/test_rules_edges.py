"""Rule kinds at their edges: what a clear-by-command (`reset`) and a restart with active alarms (`restore`)
do to each evaluator, devices kept apart, values that are not numbers, memory bounds, and the matching
rules every kind shares (gateway/rules/match.py). Complements the tables of test_rules_kinds.py."""

from __future__ import annotations

import math

import pytest

from gateway.clock import ManualClock
from gateway.model import EventKind
from gateway.rules import kinds
from gateway.rules.match import BadValue, Evaluator, number, selects
from gateway.rules.rate import SAMPLES_MAX
from gateway.rules.schema import Match
from tests.unit.rules_support import DEVICES, Feed, rules

HYDRANT = DEVICES["hydrant-1"]
FLOW = DEVICES["flow-2"]


def build(rule: dict, now: float = 0.0) -> tuple[Evaluator, Feed]:
    (ev,) = kinds.build(rules([rule]), DEVICES, now)
    return ev, Feed(ManualClock())


def raised(signals) -> list[tuple[str, bool]]:
    return [(s.device_id, s.raise_) for s in signals]


LOW = {"kind": "threshold", "id": "low", "severity": "major", "types": ["hydrant", "pump_station"],
       "field": "pressure_mpa", "op": "<", "limit": 0.10, "clear": 0.14}
FALL = {"kind": "rate", "id": "fall", "severity": "major", "types": ["hydrant"], "field": "pressure_mpa",
        "direction": "fall", "delta": 0.2, "window_s": 30}
OFFLINE = {"kind": "offline", "id": "offline", "severity": "minor", "types": ["smoke"], "grace_s": 60}
FIRE = {"kind": "correlate", "id": "fire", "severity": "critical", "within_s": 120,
        "a": {"types": ["water_flow"], "field": "flow_lps", "op": ">", "value": 0},
        "b": {"types": ["smoke"], "event": "alarm", "code": "smoke"}}
MISUSE = {**FIRE, "id": "misuse", "mode": "a_without_b"}
SMOKE = {"kind": "event", "id": "smoke", "severity": "critical", "types": ["smoke"], "events": ["alarm"], "codes": ["smoke"]}


# ---- threshold ----------------------------------------------------------------------------------------------

def test_threshold_reset_lets_a_persisting_condition_raise_again():
    ev, feed = build(LOW)
    assert raised(ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.05), HYDRANT, 0)) == [("hydrant-1", True)]
    assert ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.05), HYDRANT, 1) == []  # latched
    ev.reset("hydrant-1", 2)  # cleared by command while the pressure is still low
    assert raised(ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.05), HYDRANT, 3)) == [("hydrant-1", True)]


def test_threshold_restore_starts_latched_and_still_clears():
    ev, feed = build(LOW)
    ev.restore("hydrant-1", 0)  # active before the restart
    assert ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.05), HYDRANT, 1) == []  # not raised twice
    assert raised(ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.20), HYDRANT, 2)) == [("hydrant-1", False)]


def test_threshold_devices_are_independent():
    ev, feed = build(LOW)
    pump = DEVICES["hydrant-1"]  # same rule, two device ids: state is per device id
    assert raised(ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.05), pump, 0)) == [("hydrant-1", True)]
    assert raised(ev.on_item(feed.reading("hydrant-9", pressure_mpa=0.05), pump, 0)) == [("hydrant-9", True)]
    assert raised(ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.5), pump, 1)) == [("hydrant-1", False)]
    assert ev.on_item(feed.reading("hydrant-9", pressure_mpa=0.05), pump, 1) == []  # still active, unaffected


def test_threshold_without_clear_level_clears_at_the_limit_itself():
    ev, feed = build({**LOW, "clear": None, "op": ">=", "field": "lel_pct", "limit": 25, "types": ["gas"]})
    gas = DEVICES["gas-401"]
    assert raised(ev.on_item(feed.reading("gas-401", lel_pct=25), gas, 0)) == [("gas-401", True)]  # >= at equality
    assert ev.on_item(feed.reading("gas-401", lel_pct=25), gas, 1) == []
    assert raised(ev.on_item(feed.reading("gas-401", lel_pct=24.99), gas, 2)) == [("gas-401", False)]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), True, "0.05", None, [0.05]])
def test_threshold_non_numbers_raise_bad_value_and_change_nothing(value):
    ev, feed = build(LOW)
    with pytest.raises(BadValue) as exc:
        ev.on_item(feed.reading("hydrant-1", pressure_mpa=value), HYDRANT, 0)
    assert exc.value.field == "pressure_mpa"
    assert ev.tick(1000) == []  # no state was created by the bad value


def test_threshold_a_reading_without_the_field_is_ignored_not_a_recovery():
    ev, feed = build({**LOW, "for_s": 60})
    ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.05), HYDRANT, 0)
    assert ev.on_item(feed.reading("hydrant-1", battery_pct=80), HYDRANT, 30) == []  # says nothing about pressure
    assert raised(ev.tick(60)) == [("hydrant-1", True)]


# ---- rate -------------------------------------------------------------------------------------------------

def test_rate_reset_and_restore():
    ev, feed = build(FALL)
    ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.5), HYDRANT, 0)
    assert raised(ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.2), HYDRANT, 10)) == [("hydrant-1", True)]
    ev.reset("hydrant-1", 11)  # cleared by command: the window starts empty, no instant re-raise
    assert ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.2), HYDRANT, 12) == []
    ev.restore("hydrant-1", 100)  # active before a restart: quiet for the window clears it
    assert ev.tick(129) == [] and raised(ev.tick(130)) == [("hydrant-1", False)]


def test_rate_custom_clear_for_s():
    ev, feed = build({**FALL, "clear_for_s": 300})
    ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.5), HYDRANT, 0)
    ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.2), HYDRANT, 1)
    assert ev.tick(200) == [] and raised(ev.tick(301)) == [("hydrant-1", False)]


def test_rate_memory_is_bounded_for_a_chatty_device():
    ev, feed = build({**FALL, "window_s": 3600})
    for i in range(5 * SAMPLES_MAX):  # a rising staircase keeps every sample in the lows queue
        ev.on_item(feed.reading("hydrant-1", pressure_mpa=i / 1000), HYDRANT, i * 0.1)
    st = ev._state["hydrant-1"]  # noqa: SLF001 - the bound is the behaviour under test
    assert len(st.lows) <= SAMPLES_MAX and len(st.highs) <= SAMPLES_MAX


def test_rate_rise_rule_ignores_a_fall():
    ev, feed = build({**FALL, "direction": "rise"})
    ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.5), HYDRANT, 0)
    assert ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.1), HYDRANT, 1) == []
    assert raised(ev.on_item(feed.reading("hydrant-1", pressure_mpa=0.35), HYDRANT, 2)) == [("hydrant-1", True)]


# ---- offline ----------------------------------------------------------------------------------------------

def test_offline_reset_gives_a_fresh_timeout_instead_of_reraising():
    ev, _ = build(OFFLINE)
    limit = 2 * 3600 + 60
    assert ("smoke-401", True) in raised(ev.tick(limit + 1))
    ev.reset("smoke-401", limit + 2)  # cleared by hand while the detector is still silent
    assert ("smoke-401", True) not in raised(ev.tick(limit + 3))
    assert ("smoke-401", True) in raised(ev.tick(2 * limit + 3))


def test_offline_restore_is_cleared_by_the_next_frame():
    ev, feed = build(OFFLINE)
    ev.restore("smoke-401", 0)
    assert raised(ev.on_item(feed.event("smoke-401", EventKind.HEARTBEAT), DEVICES["smoke-401"], 1)) == [("smoke-401", False)]


def test_offline_polled_devices_without_timeout_rely_on_driver_events():
    ev, feed = build({**OFFLINE, "types": ["hydrant"]})
    assert ev.tick(10**9) == []  # no heartbeat, timeout_s 0: silence alone never raises
    assert raised(ev.on_item(feed.event("hydrant-1", EventKind.OFFLINE, "timeouts"), HYDRANT, 1)) == [("hydrant-1", True)]
    ev2, _ = build({**OFFLINE, "types": ["hydrant"], "timeout_s": 300})
    assert ev2.tick(300) == [] and raised(ev2.tick(300.5)) == [("hydrant-1", True)]


def test_offline_every_device_gets_a_full_timeout_after_start():
    ev, _ = build(OFFLINE, now=10_000.0)  # the engine (re)started at t = 10,000
    assert ev.tick(10_000 + 7260) == []


# ---- correlate ----------------------------------------------------------------------------------------------

def test_correlate_reset_allows_a_new_confirmation_and_restore_latches():
    ev, feed = build(FIRE)
    smoke = DEVICES["smoke-401"]
    ev.on_item(feed.reading("flow-2", flow_lps=2.0), FLOW, 0)
    assert raised(ev.on_item(feed.event("smoke-401", EventKind.ALARM, "smoke"), smoke, 5)) == [("flow-2", True)]
    assert ev.on_item(feed.event("smoke-401", EventKind.ALARM, "smoke"), smoke, 6) == []  # one active per A device
    ev.reset("flow-2", 7)
    assert raised(ev.on_item(feed.reading("flow-2", flow_lps=2.0), FLOW, 8)) == [("flow-2", True)]
    ev2, _ = build(FIRE)
    ev2.restore("flow-2", 0)
    assert raised(ev2.on_item(feed.reading("flow-2", flow_lps=0.0), FLOW, 1)) == [("flow-2", False)]


def test_misuse_pending_is_dropped_when_the_flow_stops_inside_the_window():
    ev, feed = build(MISUSE)
    ev.on_item(feed.reading("flow-2", flow_lps=2.0), FLOW, 0)
    assert ev.on_item(feed.reading("flow-2", flow_lps=0.0), FLOW, 60) == []  # a short test draw, not misuse
    assert ev.tick(500) == []


def test_correlate_b_with_another_code_is_not_b():
    ev, feed = build(FIRE)
    ev.on_item(feed.reading("flow-2", flow_lps=2.0), FLOW, 0)
    assert ev.on_item(feed.event("smoke-401", EventKind.ALARM, "heat"), DEVICES["smoke-401"], 5) == []


# ---- event ---------------------------------------------------------------------------------------------------

def test_event_rule_ignores_readings_and_its_reset_restore_are_harmless():
    ev, feed = build(SMOKE)
    smoke = DEVICES["smoke-401"]
    assert ev.on_item(feed.reading("smoke-401", alarm=True), smoke, 0) == []  # a flag in a reading is not the event
    ev.reset("smoke-401", 0)
    ev.restore("smoke-401", 0)
    assert raised(ev.on_item(feed.event("smoke-401", EventKind.ALARM_CLEARED), smoke, 1)) == [("smoke-401", False)]
    assert ev.tick(10**6) == []


# ---- shared matching --------------------------------------------------------------------------------------------

def test_selects_is_the_union_of_ids_types_and_profiles_and_empty_selects_all():
    assert all(selects(Match(), d) for d in DEVICES.values())
    m = Match(devices=["gas-401"], types=["hydrant"], profiles=["water_flow_p"])
    assert {d.id for d in DEVICES.values() if selects(m, d)} == {"gas-401", "hydrant-1", "flow-2"}


@pytest.mark.parametrize(("value", "want"), [(1, 1.0), (0, 0.0), (-2.5, -2.5), (10**20, 1e20)])
def test_number_accepts_finite_ints_and_floats(value, want):
    assert number({"x": value}, "x") == want
    assert number({}, "x") is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, False, "1", b"1", {"v": 1}])
def test_number_refuses_everything_else(value):
    with pytest.raises(BadValue):
        number({"x": value}, "x")


def test_an_unknown_rule_kind_is_a_programming_error():
    class Strange:
        devices: list = []
        types: list = []
        profiles: list = []

    with pytest.raises(TypeError, match="no evaluator"):
        kinds.build((Strange(),), DEVICES, 0.0)
