"""Records -> GB 26875 objects: part types, state bits and analog parameters of docs/gb26875.md."""

from __future__ import annotations

import msgspec
import pytest

from gateway.clock import ManualClock
from gateway.model import Device, DeviceType, Location, RecordClass
from gateway.store.outbox import Record
from gateway.uplink.gb26875.config import GB26875Section
from gateway.uplink.gb26875.mapping import Mapper, NotApplicable, part_address
from gateway.uplink.gb26875.objects import PartAnalog, PartBit, PartState, encode_adu

CLOCK = ManualClock(wall_s=1_596_280_728.0)  # 2020-08-01 19:18:48 in Asia/Shanghai
DEVICES = {d.id: d for d in [
    Device("smoke-401", "smoke", DeviceType.SMOKE, "lora", 1, Location("2", "1", "401")),
    Device("gas-401", "gas", DeviceType.GAS, "lora", 2, Location("2", "1", "401")),
    Device("hydrant-1", "hydrant_monitor", DeviceType.HYDRANT, "rs485", 3),
    Device("flow-1", "flow", DeviceType.WATER_FLOW, "lora", 4),
    Device("pumps", "pump_station", DeviceType.PUMP_STATION, "rs485", 5),
    Device("cover-1", "manhole", DeviceType.MANHOLE, "lora", 6),
]}


def mapper(**over) -> Mapper:
    return Mapper(DEVICES, msgspec.convert({"system_address": 7, **over}, GB26875Section))


def rec(cls: RecordClass, device: str, body: dict, seq: int = 1) -> Record:
    kind = {RecordClass.ALARM: "alarm.raised", RecordClass.EVENT: f"event.{body.get('kind')}"}.get(cls, "reading")
    return Record(seq, cls, kind, device, CLOCK.now(), body)


def event(device: str, kind: str, code: str = "") -> Record:
    return rec(RecordClass.EVENT, device, {"kind": kind, "code": code})


def only(frames) -> object:
    assert len(frames) == 1 and len(frames[0]) == 1
    return frames[0][0]


def test_smoke_alarm_event_is_a_part_state_with_the_fire_alarm_bit():
    obj = only(mapper().frames_for(event("smoke-401", "alarm", "smoke"), 0.0))
    assert isinstance(obj, PartState)
    assert (obj.sys_type, obj.sys_addr, obj.part_type) == (1, 7, 42)
    assert obj.state == PartBit.NORMAL | PartBit.FIRE_ALARM
    assert obj.part_addr == part_address("smoke-401", {})
    assert obj.description.startswith("2栋1单元401")
    assert obj.time.isoformat() == "2020-08-01T19:18:48"  # local time of the centre (UTC+8)


def test_rule_alarm_then_device_event_for_one_smoke_alarm_give_one_frame():
    m = mapper()
    raised = rec(RecordClass.ALARM, "smoke-401", {"transition": "raised", "alarm_id": "a1", "rule_kind": "event"})
    assert only(m.frames_for(raised, 0.0)).state & PartBit.FIRE_ALARM
    with pytest.raises(NotApplicable) as na:
        m.frames_for(event("smoke-401", "alarm", "smoke"), 0.0)
    assert na.value.reason == "unchanged"


def test_alarm_clears_only_when_every_condition_is_gone():
    m = mapper()
    m.frames_for(rec(RecordClass.ALARM, "smoke-401", {"transition": "raised", "alarm_id": "a1", "rule_kind": "event"}), 0)
    with pytest.raises(NotApplicable):
        m.frames_for(event("smoke-401", "alarm", "smoke"), 0)
    with pytest.raises(NotApplicable):  # the detector still alarms
        m.frames_for(rec(RecordClass.ALARM, "smoke-401", {"transition": "cleared", "alarm_id": "a1"}), 0)
    assert only(m.frames_for(event("smoke-401", "alarm_cleared", "smoke"), 0)).state == PartBit.NORMAL


def test_fault_and_offline_set_the_fault_bit_and_clear_independently():
    m = mapper()
    assert only(m.frames_for(event("gas-401", "fault", "sensor"), 0)).state == PartBit.NORMAL | PartBit.FAULT
    with pytest.raises(NotApplicable):
        m.frames_for(event("gas-401", "offline"), 0)
    with pytest.raises(NotApplicable):
        m.frames_for(event("gas-401", "fault_cleared"), 0)  # still offline
    assert only(m.frames_for(event("gas-401", "online"), 0)).state == PartBit.NORMAL


def test_self_test_reports_test_mode_once_and_leaves_no_condition():
    m = mapper()
    assert only(m.frames_for(event("smoke-401", "test", "self_test"), 0)).state == PartBit.FIRE_ALARM
    assert m.state("smoke-401") == PartBit.NORMAL


def test_gas_reading_is_analog_type_6_in_tenths_of_lel_rate_limited_per_session():
    m = mapper(analog_period_s=60)
    obj = only(m.frames_for(rec(RecordClass.TELEMETRY, "gas-401", {"values": {"gas_lel_pct": 12.5}}), 100.0))
    assert isinstance(obj, PartAnalog) and (obj.part_type, obj.param_type, obj.value) == (12, 6, 125)
    with pytest.raises(NotApplicable):
        m.frames_for(rec(RecordClass.TELEMETRY, "gas-401", {"values": {"gas_lel_pct": 13.0}}), 130.0)
    assert only(m.frames_for(rec(RecordClass.TELEMETRY, "gas-401", {"values": {"gas_lel_pct": 13.0}}), 161.0)).value == 130
    m.reset_session()
    assert only(m.frames_for(rec(RecordClass.TELEMETRY, "gas-401", {"values": {"gas_lel_pct": 1.0}}), 162.0)).value == 10


def test_hydrant_pressure_is_analog_type_5_in_tenths_of_kpa():
    obj = only(mapper().frames_for(rec(RecordClass.TELEMETRY, "hydrant-1", {"values": {"pressure_mpa": 0.35}}), 0))
    assert (obj.sys_type, obj.param_type, obj.value) == (11, 5, 3500)


def test_water_flow_is_part_96_feedback_and_analog_type_10():
    m = mapper()
    assert only(m.frames_for(event("flow-1", "alarm", "water_flow"), 0)).state == PartBit.NORMAL | PartBit.FEEDBACK
    obj = only(m.frames_for(rec(RecordClass.TELEMETRY, "flow-1", {"values": {"flow_l_s": 2.4}}), 0))
    assert (obj.part_type, obj.param_type, obj.value) == (96, 10, 24)


def test_pump_running_is_part_91_started_sent_on_change_only():
    m = mapper(analog_period_s=3600, part_addresses={"pumps/pump1": 201})
    body = {"values": {"pump1_running": True, "pump2_running": False, "outlet_pressure_mpa": 0.6}}
    states, analogs = m.frames_for(rec(RecordClass.TELEMETRY, "pumps", body), 0)
    by_addr = {o.part_addr: o for o in states}
    assert by_addr[201].part_type == 91 and by_addr[201].state == PartBit.NORMAL | PartBit.STARTED
    assert by_addr[part_address("pumps/pump2", {})].state == PartBit.NORMAL
    assert [(a.param_type, a.value) for a in analogs] == [(5, 6000)]
    with pytest.raises(NotApplicable):
        m.frames_for(rec(RecordClass.TELEMETRY, "pumps", body), 1)


def test_values_beyond_int16_are_not_sent_as_analogs():
    with pytest.raises(NotApplicable):
        mapper().frames_for(rec(RecordClass.TELEMETRY, "hydrant-1", {"values": {"pressure_mpa": 5.0}}), 0)


@pytest.mark.parametrize("record", [
    event("cover-1", "alarm", "cap_opened"),
    event("unknown-device", "alarm", "smoke"),
    event("smoke-401", "heartbeat"),
    rec(RecordClass.ALARM, "smoke-401", {"transition": "acknowledged", "alarm_id": "a1"}),
], ids=["manhole", "unknown_device", "heartbeat", "acknowledged"])
def test_records_without_a_gb_meaning_are_not_applicable(record):
    with pytest.raises(NotApplicable) as na:
        mapper().frames_for(record, 0)
    assert na.value.reason in ("no_part_mapping", "no_gb_meaning")


def test_a_record_stamped_at_1970_by_an_unsynced_clock_still_maps_with_a_clamped_time_tag():
    old = Record(1, RecordClass.EVENT, "event.alarm", "smoke-401", ManualClock(wall_s=5.0, synced=False).now(), {"kind": "alarm", "code": "smoke"})
    obj = only(mapper().frames_for(old, 0))
    assert obj.time.year == 2000 and obj.state & PartBit.FIRE_ALARM
    assert encode_adu([obj])
