"""Our outbox records -> GB/T 26875.3 objects: part types, state bits, analog parameter types.

The table is docs/gb26875.md. A part's state word is a level: the OR of its active conditions (an alarm,
a fault, offline...), so a frame always carries the part's whole state, not only the latest change.
A state frame is sent only when the word changes (the rule's ALARM record and the detector's EVENT record
for one smoke alarm give one frame); the session cache is cleared on every reconnect.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from typing import Any

from gateway.model import Device, DeviceType, EventKind, RecordClass
from gateway.uplink.gb26875.frame import local_time
from gateway.uplink.gb26875.objects import DeviceBit, DeviceOperation, DeviceState, Object, OperationBit, PartAnalog, PartBit, PartState

# System types (GB/T 26875.3 table 4): 1 fire alarm system, 11 hydrant system.
SYS_FIRE_ALARM = 1
SYS_HYDRANT = 11


@dataclass(frozen=True)
class PartKind:
    sys_type: int
    part_type: int  # table 5
    alarm_bit: PartBit  # what "alarm" means for this part
    label: str  # appended to the location in the 31-byte description


# Part types: 42 point photoelectric smoke (GB 20517 household alarms are photoelectric), 12 independent
# combustible-gas detector, 0 generic (a hydrant pressure monitor has no code of its own), 96 water-flow
# indicator (its "alarm" is water flowing: feedback), 91 fire pump, 92 fire water tank.
PARTS: dict[DeviceType, PartKind] = {
    DeviceType.SMOKE: PartKind(SYS_FIRE_ALARM, 42, PartBit.FIRE_ALARM, "烟感"),
    DeviceType.GAS: PartKind(SYS_FIRE_ALARM, 12, PartBit.FIRE_ALARM, "燃气"),
    DeviceType.HYDRANT: PartKind(SYS_HYDRANT, 0, PartBit.SUPERVISORY, "消火栓"),
    DeviceType.WATER_FLOW: PartKind(SYS_HYDRANT, 96, PartBit.FEEDBACK, "水流"),
    DeviceType.PUMP_STATION: PartKind(SYS_HYDRANT, 0, PartBit.SUPERVISORY, "泵房"),
}
PUMP = PartKind(SYS_HYDRANT, 91, PartBit.SUPERVISORY, "消防泵")
TANK = PartKind(SYS_HYDRANT, 92, PartBit.SUPERVISORY, "水箱")

# Analog values: reading field -> (sub-part or "", parameter type, raw units per field unit).
# Parameter types: 2 height 0.01 m, 5 pressure 0.1 kPa (1 MPa = 10,000), 6 gas 0.1 %LEL, 10 flow 0.1 L/s.
ANALOGS: dict[DeviceType, dict[str, tuple[str, int, float]]] = {
    DeviceType.HYDRANT: {"pressure_mpa": ("", 5, 10_000)},
    DeviceType.GAS: {"gas_lel_pct": ("", 6, 10)},
    DeviceType.WATER_FLOW: {"flow_l_s": ("", 10, 10)},
    DeviceType.PUMP_STATION: {"outlet_pressure_mpa": ("", 5, 10_000), "outlet_flow_lps": ("", 10, 10),
                              "tank_level_m": ("tank", 2, 100)},
}
# Pump-station readings that are part states of a sub-part: field -> (sub-part, bit).
PUMP_FLAGS = {"pump1_running": ("pump1", PartBit.STARTED), "pump1_fault": ("pump1", PartBit.FAULT),
              "pump2_running": ("pump2", PartBit.STARTED), "pump2_fault": ("pump2", PartBit.FAULT)}

# Event kind -> (condition, bit); the clearing kinds remove conditions instead.
_SETS = {EventKind.FAULT: ("fault", PartBit.FAULT), EventKind.OFFLINE: ("offline", PartBit.FAULT),
         EventKind.TAMPER: ("tamper", PartBit.FAULT), EventKind.BATTERY_LOW: ("battery", PartBit.MAIN_POWER_FAULT)}
_CLEARS = {EventKind.ALARM_CLEARED: "alarm", EventKind.FAULT_CLEARED: "fault", EventKind.ONLINE: "offline"}
_TAMPER_RESTORED = {"base_restored", "restored"}

# Gateway-level records (device = gateway id): the transmission device's own state, type 21 (issue 23).
# Power conditions -> bits: mains lost b3; backup low or faulty b4 (GB 4717 counts 备电欠压 as a backup fault).
POWER_KIND = "event.power"
SELFCHECK_KIND = "event.selfcheck"
_POWER_BITS = {"mains_lost": DeviceBit.MAINS_FAULT, "battery_low": DeviceBit.BACKUP_POWER_FAULT,
               "backup_fault": DeviceBit.BACKUP_POWER_FAULT}


class NotApplicable(Exception):
    """The record has no GB 26875 meaning (or nothing changed): done for this uplink without a frame."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def part_address(name: str, overrides: dict[str, int]) -> int:
    """The part's 4-byte address: as registered at the centre, else a stable CRC-32 of its name."""
    return overrides[name] if name in overrides else zlib.crc32(name.encode()) & 0xFFFFFFFF


class Mapper:
    """Turns records into object lists (one list per frame). Holds each part's conditions."""

    def __init__(self, devices: dict[str, Device], cfg: Any) -> None:
        self.devices = devices
        self.cfg = cfg
        self.tz = cfg.tz()
        self._conditions: dict[str, dict[str, PartBit]] = {}  # part name -> condition -> bit
        self._sent_state: dict[str, int] = {}  # part name -> state word sent this session
        self._sent_analog: dict[tuple[str, int], float] = {}  # (part, param) -> mono time sent
        self._device_bits: dict[str, DeviceBit] = {}  # condition -> type 21 bit (power, self-check)
        self._sent_device: int | None = None

    def reset_session(self) -> None:
        """A new connection: the centre may have lost what we told it, so resend states and analogs."""
        self._sent_state.clear()
        self._sent_analog.clear()
        self._sent_device = None

    def device_state(self) -> int:
        """The type 21 state byte: b0 normal ORed with the active gateway-level conditions (also the heartbeat)."""
        word = DeviceBit.NORMAL
        for bit in self._device_bits.values():
            word |= bit
        return int(word)

    def frames_for(self, rec: Any, mono_s: float) -> list[list[Object]]:
        """Object lists to send for this record; NotApplicable when there are none."""
        if rec.kind in (POWER_KIND, SELFCHECK_KIND):
            return self._device_frames(rec)
        device = self.devices.get(rec.device)
        if device is None or device.type not in PARTS:
            raise NotApplicable("no_part_mapping")
        t = local_time(rec.stamp.wall_s, self.tz)
        if rec.cls == RecordClass.TELEMETRY:
            frames = [f for f in (self._states_from_reading(device, rec.body, t), self._analogs(device, rec.body, t, mono_s)) if f]
        elif rec.cls == RecordClass.ALARM:
            frames = [f for f in [self._alarm(device, rec.body, t)] if f]
        else:
            frames = [f for f in [self._event(device, rec.body, t)] if f]
        if not frames:
            raise NotApplicable("unchanged")
        return frames

    def _device_frames(self, rec: Any) -> list[list[Object]]:
        """Power and self-check records -> type 21 (when the byte changed), and type 24 b4 for a self-check."""
        t = local_time(rec.stamp.wall_s, self.tz)
        frames: list[list[Object]] = []
        body = rec.body
        if rec.kind == POWER_KIND:
            conditions = body.get("conditions") if isinstance(body.get("conditions"), dict) else {}
            for cond in _POWER_BITS:
                self._device_bits.pop(f"power:{cond}", None)
                if conditions.get(cond) is True:
                    self._device_bits[f"power:{cond}"] = _POWER_BITS[cond]
        else:
            if body.get("ok") is False:
                self._device_bits["selfcheck"] = DeviceBit.FAULT
            else:
                self._device_bits.pop("selfcheck", None)
            frames.append([DeviceOperation(int(OperationBit.SELF_TEST), self.cfg.operator_number, t)])
        word = self.device_state()
        if word != self._sent_device:
            self._sent_device = word
            frames.insert(0, [DeviceState(word, t)])
        if not frames:
            raise NotApplicable("unchanged")
        return frames

    # ---- state words ------------------------------------------------------------------------------
    def state(self, name: str) -> int:
        word = PartBit.NORMAL
        for bit in self._conditions.get(name, {}).values():
            word |= bit
        return int(word)

    def _set(self, name: str, cond: str, bit: PartBit | None) -> None:
        conds = self._conditions.setdefault(name, {})
        if bit is None:
            conds.pop(cond, None)
        else:
            conds[cond] = bit

    def _clear_prefix(self, name: str, prefix: str) -> None:
        conds = self._conditions.get(name, {})
        for cond in [c for c in conds if c == prefix or c.startswith(prefix + ":")]:
            del conds[cond]

    def _state_object(self, device: Device, sub: str, kind: PartKind, t: dt.datetime, force_word: int | None = None) -> PartState | None:
        name = f"{device.id}/{sub}" if sub else device.id
        word = self.state(name) if force_word is None else force_word
        if force_word is None and self._sent_state.get(name) == word:
            return None
        if force_word is None:
            self._sent_state[name] = word
        label = device.location.label() or device.id
        return PartState(kind.sys_type, self.cfg.system_address, kind.part_type, part_address(name, self.cfg.part_addresses),
                         word, f"{label}{kind.label}{sub[-1:] if sub.startswith('pump') else ''}", t)

    def _event(self, device: Device, body: dict[str, Any], t: dt.datetime) -> list[Object]:
        kind, code = body.get("kind", ""), str(body.get("code", ""))
        part = PARTS[device.type]
        if kind == EventKind.ALARM and _is_test(body):
            return self._test_frame(device, part, t)  # `gateway test fire`: a test report, no condition
        if kind == EventKind.ALARM:
            self._set(device.id, f"alarm:{code}", part.alarm_bit)
        elif kind in _CLEARS:
            prefix = _CLEARS[EventKind(kind)]
            self._clear_prefix(device.id, f"{prefix}:{code}" if code and prefix == "alarm" else prefix)
        elif kind == EventKind.TAMPER and code in _TAMPER_RESTORED:
            self._clear_prefix(device.id, "tamper")
        elif kind in _SETS:
            cond, bit = _SETS[EventKind(kind)]
            self._set(device.id, f"{cond}:{code}", bit)
        elif kind == EventKind.TEST:
            return self._test_frame(device, part, t)
        else:
            raise NotApplicable("no_gb_meaning")  # heartbeat, silenced, button, counter_reset
        obj = self._state_object(device, "", part, t)
        return [obj] if obj else []

    def _test_frame(self, device: Device, part: PartKind, t: dt.datetime) -> list[Object]:
        # A test is one report in test mode (b0 = 0) with the alarm it sounds; it leaves no condition.
        obj = self._state_object(device, "", part, t, force_word=(self.state(device.id) & ~PartBit.NORMAL) | part.alarm_bit)
        return [obj] if obj else []

    def _alarm(self, device: Device, body: dict[str, Any], t: dt.datetime) -> list[Object]:
        transition, alarm_id = body.get("transition", ""), str(body.get("alarm_id", ""))
        if _is_test(body):
            if transition == "raised":
                return self._test_frame(device, PARTS[device.type], t)
            raise NotApplicable("no_gb_meaning")  # a test alarm's later transitions change no state
        if transition == "raised":
            rule_kind = body.get("rule_kind", "")
            bit = PartBit.FAULT if rule_kind == "offline" else PARTS[device.type].alarm_bit if rule_kind in ("event", "correlate") else PartBit.SUPERVISORY
            self._set(device.id, f"rule:{alarm_id}", bit)
        elif transition == "cleared":
            self._set(device.id, f"rule:{alarm_id}", None)
        else:
            raise NotApplicable("no_gb_meaning")  # acknowledged: the centre keeps its own acknowledgement
        obj = self._state_object(device, "", PARTS[device.type], t)
        return [obj] if obj else []

    def _states_from_reading(self, device: Device, body: dict[str, Any], t: dt.datetime) -> list[Object]:
        if device.type != DeviceType.PUMP_STATION:
            return []
        values = _values(body)
        for field, (sub, bit) in PUMP_FLAGS.items():
            if field in values:
                self._set(f"{device.id}/{sub}", field, bit if values[field] else None)
        subs = sorted({sub for field, (sub, _bit) in PUMP_FLAGS.items() if field in values})
        return [o for o in (self._state_object(device, sub, PUMP, t) for sub in subs) if o]

    def _analogs(self, device: Device, body: dict[str, Any], t: dt.datetime, mono_s: float) -> list[Object]:
        out: list[Object] = []
        values = _values(body)
        for field, (sub, param, scale) in ANALOGS.get(device.type, {}).items():
            value = values.get(field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            raw = round(value * scale)
            if not -0x8000 <= raw <= 0x7FFF:
                continue  # not representable in int16: the MQTT uplink still carries it
            name = f"{device.id}/{sub}" if sub else device.id
            last = self._sent_analog.get((name, param))
            if last is not None and mono_s - last < self.cfg.analog_period_s:
                continue
            self._sent_analog[(name, param)] = mono_s
            kind = TANK if sub == "tank" else PARTS[device.type]
            out.append(PartAnalog(kind.sys_type, self.cfg.system_address, kind.part_type,
                                  part_address(name, self.cfg.part_addresses), param, raw, t))
        return out


def _is_test(body: dict[str, Any]) -> bool:
    """A simulated fire test (`gateway test fire`): the flag rides in the event's and the alarm's detail."""
    detail = body.get("detail")
    return isinstance(detail, dict) and detail.get("test") is True


def _values(body: dict[str, Any]) -> dict[str, Any]:
    values = body.get("values")
    return values if isinstance(values, dict) else body
