"""Smoke detector codec smoke_v1: round trip, event codes (the LoRa/NB-IoT contract), bad payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.codecs import CodecMeta, smoke
from gateway.errors import CodecError
from gateway.model import Event, EventKind, Reading, Stamp

META = CodecMeta("smoke-2-401", Stamp(1_790_000_000.0, "b", 1, True), "lora", rssi_dbm=-91)


def flags(names):
    return st.fixed_dictionaries({n: st.booleans() for n in names})


reports = st.builds(
    smoke.SmokeReport,
    reason=st.sampled_from(smoke.REASONS),
    status=flags(smoke.STATUS),
    faults=st.lists(st.sampled_from(smoke.FAULTS), unique=True).map(lambda fs: tuple(f for f in smoke.FAULTS if f in fs)),
    battery_pct=st.none() | st.integers(0, 100),
    battery_mv=st.none() | st.integers(1, 0xFFFF),
    smoke_db_m=st.none() | st.integers(0, 0xFFFE).map(lambda v: round(v * 0.01, 2)),
    temperature_c=st.none() | st.integers(-0x8000, 0x7FFE).map(lambda v: round(v * 0.1, 1)),
)


@given(reports)
def test_round_trip(report):
    assert smoke.parse(smoke.encode(report)) == report
    items = smoke.decode(smoke.encode(report), META)
    assert isinstance(items[0], Reading) and all(isinstance(i, Event) for i in items[1:])
    assert items[0].values["alarm"] == report.status["alarm"] and items[0].values["rssi_dbm"] == -91


def events(report):
    return [(e.kind, e.code) for e in smoke.decode(smoke.encode(report), META)[1:]]


@pytest.mark.parametrize("why, expected", [
    ("alarm", (EventKind.ALARM, "smoke")),
    ("alarm_cleared", (EventKind.ALARM_CLEARED, "smoke")),
    ("silenced", (EventKind.SILENCED, "local")),
    ("silenced_remote", (EventKind.SILENCED, "remote")),
    ("self_test", (EventKind.TEST, "self_test")),
    ("removed_from_base", (EventKind.TAMPER, "removed_from_base")),
    ("base_restored", (EventKind.TAMPER, "base_restored")),
    ("battery_low", (EventKind.BATTERY_LOW, "battery")),
    ("heartbeat", (EventKind.HEARTBEAT, "")),
    ("fault_cleared", (EventKind.FAULT_CLEARED, "")),
])
def test_reason_becomes_event_with_its_code(why, expected):
    assert events(smoke.SmokeReport(why)) == [expected]


def test_fault_report_gives_one_fault_event_per_fault_class():
    assert events(smoke.SmokeReport("fault", faults=("chamber_fouled", "buzzer"))) == [
        (EventKind.FAULT, "chamber_fouled"), (EventKind.FAULT, "buzzer")]


def test_heartbeat_while_still_in_alarm_repeats_the_alarm():
    got = smoke.decode(smoke.encode(smoke.SmokeReport("heartbeat", {"alarm": True})), META)
    assert [(e.kind, e.code, e.detail) for e in got[1:]] == [
        (EventKind.HEARTBEAT, "", {}), (EventKind.ALARM, "smoke", {"repeated": True})]


def test_alarm_report_does_not_double_the_alarm_event():
    assert events(smoke.SmokeReport("alarm", {"alarm": True})) == [(EventKind.ALARM, "smoke")]


def test_values_and_not_measured_fields():
    r = smoke.SmokeReport("heartbeat", battery_pct=87, battery_mv=2950, smoke_db_m=0.12, temperature_c=21.5)
    values = smoke.decode(smoke.encode(r), META)[0].values
    assert (values["battery_pct"], values["battery_mv"], values["smoke_db_m"], values["temperature_c"]) == (87, 2950, 0.12, 21.5)
    blank = smoke.decode(smoke.encode(smoke.SmokeReport()), META)[0].values
    assert not {"battery_pct", "battery_mv", "smoke_db_m", "temperature_c"} & blank.keys()


@pytest.mark.parametrize("payload, words", [(b"", "need at least 10"), (b"\x01\x00\x00", "need at least 10"),
                                            (bytes([200]) + bytes(9), "unknown report reason 200")])
def test_bad_payloads_raise_codec_error(payload, words):
    with pytest.raises(CodecError, match=words):
        smoke.decode(payload, META)


@given(st.binary(max_size=40))
def test_random_payloads_raise_only_codec_error(payload):
    try:
        smoke.decode(payload, META)
    except CodecError:
        pass
