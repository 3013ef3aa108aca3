"""Gateway-level records -> the type 21 state byte (issue 23): mains b3, backup b4, self-check b2 + type 24 b4;
test alarms (`gateway test fire`) go to the centre in test mode and leave no condition."""

from __future__ import annotations

import msgspec
import pytest

from gateway.clock import ManualClock
from gateway.model import Device, DeviceType, Location, RecordClass
from gateway.store.outbox import Record
from gateway.uplink.gb26875.config import GB26875Section
from gateway.uplink.gb26875.mapping import Mapper, NotApplicable
from gateway.uplink.gb26875.objects import DeviceBit, DeviceOperation, DeviceState, OperationBit, PartBit, encode_adu

CLOCK = ManualClock(wall_s=1_596_280_728.0)
DEVICES = {"smoke-401": Device("smoke-401", "smoke", DeviceType.SMOKE, "lora", 1, Location("2", "1", "401"))}


def mapper() -> Mapper:
    return Mapper(DEVICES, msgspec.convert({"operator_number": 3}, GB26875Section))


def power(seq: int, **conditions: bool) -> Record:
    conds = {"mains_lost": False, "on_battery": False, "battery_low": False, "backup_fault": False} | conditions
    return Record(seq, RecordClass.EVENT, "event.power", "gw-1", CLOCK.now(), {"kind": "power", "conditions": conds})


def states(frames) -> list[int]:
    return [o.state for f in frames for o in f if isinstance(o, DeviceState)]


def test_power_conditions_set_and_clear_type21_bits():
    m = mapper()
    assert m.device_state() == DeviceBit.NORMAL
    assert states(m.frames_for(power(1, mains_lost=True, on_battery=True), 0)) == [DeviceBit.NORMAL | DeviceBit.MAINS_FAULT]
    both = DeviceBit.NORMAL | DeviceBit.MAINS_FAULT | DeviceBit.BACKUP_POWER_FAULT
    assert states(m.frames_for(power(2, mains_lost=True, on_battery=True, battery_low=True), 0)) == [both]
    assert m.device_state() == both  # the heartbeat carries it too
    with pytest.raises(NotApplicable):  # same byte: nothing new for the centre
        m.frames_for(power(3, mains_lost=True, on_battery=True, battery_low=True), 0)
    assert states(m.frames_for(power(4), 0)) == [DeviceBit.NORMAL]
    assert states(m.frames_for(power(5, backup_fault=True), 0)) == [DeviceBit.NORMAL | DeviceBit.BACKUP_POWER_FAULT]


def test_reconnect_resends_the_device_state():
    m = mapper()
    m.frames_for(power(1, mains_lost=True), 0)
    m.reset_session()
    assert states(m.frames_for(power(2, mains_lost=True), 0)) == [DeviceBit.NORMAL | DeviceBit.MAINS_FAULT]


def test_selfcheck_is_a_type24_self_test_and_a_failure_sets_the_fault_bit():
    m = mapper()
    ok = Record(1, RecordClass.EVENT, "event.selfcheck", "gw-1", CLOCK.now(), {"kind": "selfcheck", "ok": True})
    frames = m.frames_for(ok, 0)
    ops = [o for f in frames for o in f if isinstance(o, DeviceOperation)]
    assert ops and ops[0].flags == OperationBit.SELF_TEST and ops[0].operator == 3
    bad = Record(2, RecordClass.EVENT, "event.selfcheck", "gw-1", CLOCK.now(), {"kind": "selfcheck", "ok": False})
    assert states(m.frames_for(bad, 0)) == [DeviceBit.NORMAL | DeviceBit.FAULT]
    for f in m.frames_for(bad, 0) + frames:
        encode_adu(f)  # each frame is one object type: encodable


def test_test_fire_alarm_goes_in_test_mode_and_leaves_no_condition():
    m = mapper()
    ev = Record(1, RecordClass.EVENT, "event.alarm", "smoke-401", CLOCK.now(),
                {"kind": "alarm", "code": "smoke", "detail": {"test": True}})
    (obj,), = m.frames_for(ev, 0)
    assert obj.state == PartBit.FIRE_ALARM  # b0 = 0: test mode
    alarm = Record(2, RecordClass.ALARM, "alarm.raised", "smoke-401", CLOCK.now(),
                   {"transition": "raised", "alarm_id": "a1", "rule_kind": "event", "detail": {"test": True}})
    (obj,), = m.frames_for(alarm, 0)
    assert obj.state == PartBit.FIRE_ALARM
    assert m.state("smoke-401") == PartBit.NORMAL  # nothing left active
    cleared = Record(3, RecordClass.ALARM, "alarm.cleared", "smoke-401", CLOCK.now(),
                     {"transition": "cleared", "alarm_id": "a1", "detail": {"test": True}})
    with pytest.raises(NotApplicable):
        m.frames_for(cleared, 0)
