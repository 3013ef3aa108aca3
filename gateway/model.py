"""The domain model every part shares: devices, stamps, readings, events, alarms.

Frozen msgspec Structs: cheap to build on the hot path, encodable to JSON/msgpack without glue.
"""

from __future__ import annotations

import enum
from typing import Any, Union

import msgspec


class ResidentCategory(enum.StrEnum):
    """Who lives where a device is fitted; decides notification urgency and wording."""

    ELDERLY_ALONE = "elderly_alone"
    DISABLED = "disabled"
    ORDINARY = "ordinary"
    COMMON_AREA = "common_area"  # stairwell, riser, courtyard: no resident


class ContactRole(enum.StrEnum):
    STREET_CENTER = "street_center"
    GRID_WORKER = "grid_worker"
    SAFETY_MANAGER = "safety_manager"
    GUARD_ROOM = "guard_room"
    RELATIVE = "relative"


class DeviceType(enum.StrEnum):
    SMOKE = "smoke"
    GAS = "gas"
    WATER_FLOW = "water_flow"
    MANHOLE = "manhole"
    HYDRANT = "hydrant"
    PUMP_STATION = "pump_station"
    RELAY_BOX = "relay_box"
    WATER_LEAK = "water_leak"  # LoRaWAN leak sensors (Milesight WS303, EM300-SLD)
    DOOR = "door"  # door/window contact (Milesight WS301): fire doors, riser cupboards
    # Care for residents living alone (issue 22): activity sources and the bedside/bathroom SOS button.
    # Not fire parts: the GB 26875 mapping skips them (gateway/uplink/gb26875/mapping.py PARTS).
    SOS_BUTTON = "sos_button"
    DOOR_CONTACT = "door_contact"  # a flat's own entrance door (an activity source), not a fire door
    WATER_METER = "water_meter"


class EventKind(enum.StrEnum):
    """What a device (or the gateway about a device) says happened.

    `code` on the Event narrows it down: kind=alarm, code="smoke" | "gas_low" | "gas_high" | "cap_opened" ...
    """

    ALARM = "alarm"
    ALARM_CLEARED = "alarm_cleared"
    FAULT = "fault"
    FAULT_CLEARED = "fault_cleared"
    TAMPER = "tamper"
    BATTERY_LOW = "battery_low"
    HEARTBEAT = "heartbeat"
    SILENCED = "silenced"
    TEST = "test"
    OFFLINE = "offline"
    ONLINE = "online"
    COUNTER_RESET = "counter_reset"
    BUTTON = "button"  # a physical acknowledge button was pressed
    SECURITY = "security"  # code "replay_suspect", "devnonce_reused": an authentic-looking frame failed a freshness check


class Severity(enum.IntEnum):
    """Lower is more urgent (sorts first, like the outbox priority)."""

    CRITICAL = 0
    MAJOR = 1
    MINOR = 2
    INFO = 3


class AlarmState(enum.StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class RecordClass(enum.IntEnum):
    """Outbox classes; the value is the priority (lower goes first, everywhere)."""

    ALARM = 0
    EVENT = 1
    STATUS = 2
    TELEMETRY = 3


class Stamp(msgspec.Struct, frozen=True, array_like=True):
    """When something was read, taken as the frame arrives.

    wall_s is only trustworthy when clock_synced (a Pi has no RTC: after a power cut its clock is
    fake-hwclock's last save until NTP syncs); mono_ns and boot_id let the outbox re-base it later.
    """

    wall_s: float
    boot_id: str
    mono_ns: int
    clock_synced: bool


class Location(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    building: str = ""
    unit: str = ""
    room: str = ""

    def label(self) -> str:
        """Chinese address fragment as the platform and SMS print it: 2栋1单元401."""
        parts = []
        if self.building:
            parts.append(f"{self.building}栋")
        if self.unit:
            parts.append(f"{self.unit}单元")
        if self.room:
            parts.append(self.room)
        return "".join(parts)


class Device(msgspec.Struct, frozen=True):
    """A configured device, resolved against its profile."""

    id: str
    profile: str
    type: DeviceType
    port: str
    address: Union[int, str]
    location: Location = Location()
    resident: ResidentCategory = ResidentCategory.COMMON_AREA
    contacts: tuple[str, ...] = ()
    heartbeat_s: float = 0.0  # from the profile; 0 = polled, no heartbeat expectation


Value = Union[float, int, bool, str]


class Reading(msgspec.Struct, frozen=True, tag="reading"):
    """Values of one device from one frame or one poll. Never merged with another reading."""

    device_id: str
    stamp: Stamp
    values: dict[str, Value]
    via: str = ""  # driver / path: "modbus_rtu", "lora", "nbiot-modem", "platform-relay"


class Event(msgspec.Struct, frozen=True, tag="event"):
    device_id: str
    kind: EventKind
    stamp: Stamp
    code: str = ""
    detail: dict[str, Value] = {}
    via: str = ""


Item = Union[Reading, Event]


class Alarm(msgspec.Struct):
    """One alarm's lifecycle: raised -> acknowledged -> cleared. One active per (rule, device)."""

    id: str
    rule: str
    device_id: str
    severity: Severity
    state: AlarmState
    title: str
    raised: Stamp
    updated: Stamp
    acknowledged_by: str = ""
    cleared_by: str = ""
    repeats: int = 0


class Command(msgspec.Struct, frozen=True):
    """An actuator command: write `value` to `target` (a named output in the device's profile).

    Made by actions and the control socket, performed by a driver's `write` (drivers.base.Actuator).
    """

    device_id: str
    target: str  # e.g. "sounder", "strobe", "trouble", "silence"
    value: Any
    reason: str = ""


def replay_suspect(item: Item) -> bool:
    """A frame that failed the replay check (drivers/sequence.py): its security event, or an alarm it
    carried, emitted flagged. It proves nothing about the device being alive (a recording can be replayed
    to keep a removed detector looking online), so liveness and last-seen ignore it."""
    return isinstance(item, Event) and (item.kind == EventKind.SECURITY or bool(item.detail.get("replay_suspect")))
