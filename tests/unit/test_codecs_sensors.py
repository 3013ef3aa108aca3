"""Gas, water-flow and manhole-cover codecs: round trips (hypothesis), alarm codes, bad payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.codecs import CodecMeta, gas, manhole, water_flow
from gateway.errors import CodecError
from gateway.model import EventKind, Stamp

META = CodecMeta("dev-1", Stamp(1_790_000_000.0, "b", 1, True), "lora")


def flags(names):
    return st.fixed_dictionaries({n: st.booleans() for n in names})


def tenths(lo, hi):
    return st.integers(lo, hi).map(lambda v: round(v * 0.1, 1))


def hundredths(lo, hi):
    return st.integers(lo, hi).map(lambda v: round(v * 0.01, 2))


gas_reports = st.builds(
    gas.GasReport, reason=st.sampled_from(gas.REASONS), status=flags(gas.STATUS),
    faults=st.lists(st.sampled_from(gas.FAULTS), unique=True).map(lambda fs: tuple(f for f in gas.FAULTS if f in fs)),
    gas_lel_pct=st.none() | tenths(0, 0xFFFE), life_months=st.none() | st.integers(0, 254))
flow_reports = st.builds(
    water_flow.FlowReport, reason=st.sampled_from(water_flow.REASONS), status=flags(water_flow.STATUS),
    pulses=st.integers(0, 2**32 - 1), duration_s=st.integers(0, 0xFFFF), flow_l_s=st.none() | tenths(0, 0xFFFE),
    battery_pct=st.none() | st.integers(0, 100))
tilt_reports = st.builds(
    manhole.TiltReport, reason=st.sampled_from(manhole.REASONS), status=flags(manhole.STATUS),
    x_deg=hundredths(-18000, 18000), y_deg=hundredths(-18000, 18000), z_deg=hundredths(-18000, 18000),
    battery_pct=st.none() | st.integers(0, 100), threshold_deg=st.integers(0, 255))


@pytest.mark.parametrize("codec, strategy", [(gas, gas_reports), (water_flow, flow_reports), (manhole, tilt_reports)],
                         ids=["gas", "water_flow", "manhole"])
def test_round_trip(codec, strategy):
    @given(strategy)
    def check(report):
        assert codec.parse(codec.encode(report)) == report
        items = codec.decode(codec.encode(report), META)
        assert items[0].device_id == "dev-1" and len(items) >= 2

    check()


@pytest.mark.parametrize("codec", [gas, water_flow, manhole, ], ids=["gas", "water_flow", "manhole"])
def test_short_and_random_payloads_raise_only_codec_error(codec):
    with pytest.raises(CodecError, match=codec.NAME):
        codec.decode(b"\x00", META)

    @given(st.binary(max_size=30))
    def check(payload):
        try:
            codec.decode(payload, META)
        except CodecError:
            pass

    check()


def kinds(codec, report):
    return [(e.kind, e.code) for e in codec.decode(codec.encode(report), META)[1:]]


def test_gas_levels_and_clear_without_code():
    high = gas.GasReport("alarm_high", {"alarm_high": True}, gas_lel_pct=42.5)
    got = gas.decode(gas.encode(high), META)
    assert got[0].values["gas_lel_pct"] == 42.5
    assert [(e.kind, e.code, e.detail) for e in got[1:]] == [(EventKind.ALARM, "gas_high", {"gas_lel_pct": 42.5})]
    assert kinds(gas, gas.GasReport("alarm_cleared")) == [(EventKind.ALARM_CLEARED, "")]
    assert kinds(gas, gas.GasReport("fault", faults=("sensor",))) == [(EventKind.FAULT, "sensor")]
    assert kinds(gas, gas.GasReport("end_of_life")) == [(EventKind.FAULT, "end_of_life")]
    assert gas.decode(gas.encode(gas.GasReport(status={"valve_closed": True})), META)[0].values["valve_closed"] is True


def test_water_flow_start_stop_carry_duration():
    start = water_flow.decode(water_flow.encode(water_flow.FlowReport("flow_started", {"flowing": True}, 120, 3, 1.5)), META)
    assert (start[1].kind, start[1].code, start[1].detail) == (EventKind.ALARM, "water_flow", {"duration_s": 3})
    assert start[0].values["flow_l_s"] == 1.5 and start[0].values["pulses"] == 120
    assert kinds(water_flow, water_flow.FlowReport("flow_stopped", duration_s=300)) == [(EventKind.ALARM_CLEARED, "water_flow")]


def test_manhole_opened_tilt_and_water_codes():
    opened = manhole.TiltReport("opened", {"opened": True, "tilt": True}, x_deg=95.5, y_deg=-1.25)
    got = manhole.decode(manhole.encode(opened), META)
    assert got[0].values["x_deg"] == 95.5 and got[0].values["y_deg"] == -1.25
    assert [(e.kind, e.code) for e in got[1:]] == [(EventKind.ALARM, "cover_opened"), (EventKind.ALARM, "cover_tilt")]
    assert kinds(manhole, manhole.TiltReport("closed")) == [(EventKind.ALARM_CLEARED, "cover_opened")]
    assert kinds(manhole, manhole.TiltReport("water_high", {"water_high": True})) == [(EventKind.ALARM, "water_level")]
