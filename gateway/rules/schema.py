"""The `[[rules]]` config: a msgspec tagged union by `kind` (event, threshold, rate, offline, correlate).

Typed rules only, no eval of user strings (issue 7). Durations carry `_s` in their key names and are
measured on the monotonic clock. Cross-section checks (unknown device, type, profile) live in check.py.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec
from msgspec import Meta

from gateway.model import DeviceType, EventKind, Severity

Ident = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Text = Annotated[str, Meta(max_length=60)]
FieldName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Seconds = Annotated[float, Meta(ge=0, le=7 * 86400)]
Window = Annotated[float, Meta(gt=0, le=86400)]
SeverityName = Literal["critical", "major", "minor", "info"]
Action = Literal["sounder", "sms", "call"]  # call: phone the tiers that call (issue 22)
Hours = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]$")]  # "07:00-22:00"
Op = Literal[">", ">=", "<", "<="]

SEVERITY = {"critical": Severity.CRITICAL, "major": Severity.MAJOR, "minor": Severity.MINOR, "info": Severity.INFO}

# The event that ends each event kind (auto_clear). Kinds absent here have no clearing event.
CLEARED_BY: dict[EventKind, EventKind] = {
    EventKind.ALARM: EventKind.ALARM_CLEARED,
    EventKind.FAULT: EventKind.FAULT_CLEARED,
    EventKind.OFFLINE: EventKind.ONLINE,
}


class Match(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Which devices a rule (or a correlate condition) watches: the union of ids, types and profiles.

    All three empty means every configured device.
    """

    devices: list[str] = []
    types: list[DeviceType] = []
    profiles: list[str] = []


class _Rule(Match, tag_field="kind", kw_only=True, frozen=True):
    id: Ident
    severity: SeverityName
    title: Text = ""  # what the SMS and the platform print, e.g. "烟感报警"; default: the rule id
    auto_clear: bool = True  # clear when the condition ends (otherwise only by command)
    actions: list[Action] = []  # local actions besides the uplink record, which every alarm gets
    # Flapping: more than flap_max raise/clear cycles within flap_window_s keeps the alarm active
    # until the condition has stayed clear for flap_hold_s (one alarm, a count, no SMS storm).
    flap_max: Annotated[int, Meta(ge=2, le=100)] = 4
    flap_window_s: Window = 600.0
    flap_hold_s: Seconds = 300.0

    @property
    def level(self) -> Severity:
        return SEVERITY[self.severity]

    @property
    def label(self) -> str:
        return self.title or self.id


class EventRule(_Rule, tag="event", kw_only=True, frozen=True):
    """A device event kind (optionally narrowed by code) raises the alarm; its clearing event clears it."""

    events: Annotated[list[EventKind], Meta(min_length=1)]
    codes: list[str] = []  # empty: any code


class ThresholdRule(_Rule, tag="threshold", kw_only=True, frozen=True):
    """`field op limit` for at least for_s raises; on the far side of `clear` for clear_for_s clears."""

    field: FieldName
    op: Op
    limit: float
    clear: float | None = None  # hysteresis level; default: the limit itself
    for_s: Seconds = 0.0
    clear_for_s: Seconds = 0.0


class RateRule(_Rule, tag="rate", kw_only=True, frozen=True):
    """`field` moves by more than `delta` (in `direction`) within window_s."""

    field: FieldName
    direction: Literal["fall", "rise", "any"]
    delta: Annotated[float, Meta(gt=0)]
    window_s: Window
    clear_for_s: Seconds | None = None  # quiet time before auto clear; default window_s


class OfflineRule(_Rule, tag="offline", kw_only=True, frozen=True):
    """No frame of any kind for heartbeat_factor x heartbeat + grace_s (protocols.md §4: k = 2)."""

    heartbeat_factor: Annotated[float, Meta(ge=1, le=100)] = 2.0
    grace_s: Seconds = 60.0
    # For devices whose profile has no heartbeat (polled): silence limit; 0 = rely on the driver's
    # own offline/online events (the Modbus poller emits them after offline_after failed polls).
    timeout_s: Seconds = 0.0


class Condition(Match, kw_only=True, frozen=True):
    """One side of a correlation: an event (kind, optional code) or a field test on readings."""

    event: EventKind | None = None
    code: str = ""
    field: FieldName | None = None
    op: Op = ">"
    value: float = 0.0


class CorrelateRule(_Rule, tag="correlate", kw_only=True, frozen=True):
    """`a` and `b` within within_s in the same scope ("both"), or `a` with no `b` ("a_without_b").

    The alarm is raised on a's device: one active per (rule, a-device).
    """

    a: Condition
    b: Condition
    within_s: Window = 120.0
    mode: Literal["both", "a_without_b"] = "both"
    scope: Literal["building", "courtyard"] = "building"


class Source(Match, kw_only=True, frozen=True):
    """One activity source of an `inactivity` rule (issue 22): which devices, and what counts as activity.

    frame: any frame except heartbeat/online/offline; change: `field` changes value (door contact,
    motion count); event: an event of `events` (narrowed by `codes`), e.g. a daily check-in button;
    volume: a cumulative water meter `field` rising by at least min_l litres within volume_window_h.
    """

    activity: Literal["frame", "change", "event", "volume"] = "frame"
    field: FieldName | None = None
    events: list[EventKind] = []
    codes: list[str] = []
    min_l: Annotated[float, Meta(gt=0, le=100000)] = 10.0  # Shenzhen/Shanghai practice: < 0.01 m3 in 12 h
    litres_per_unit: Annotated[float, Meta(gt=0)] = 1.0  # 1000 when the meter reports m3
    volume_window_h: Annotated[float, Meta(gt=0, le=168)] | None = None  # default: the rule's window_h


class InactivityRule(_Rule, tag="inactivity", kw_only=True, frozen=True):
    """Per flat (devices grouped by building/unit/room): no activity from any source for window_h hours of
    active hours raises a welfare alarm on the flat's first source device (gateway/rules/inactivity.py)."""

    sources: Annotated[list[Source], Meta(min_length=1)]
    window_h: Annotated[float, Meta(gt=0, le=168)] = 12.0
    active_hours: Hours = "00:00-24:00"  # only these local hours count towards window_h
    quiet_hours: Hours | None = None  # no welfare alarm is raised inside these (it waits for their end)
    timezone: str = "Asia/Shanghai"
    grace_s: Seconds = 60.0  # a source silent for 2 x heartbeat + grace_s is offline: a fault, not inactivity


Rule = Union[EventRule, ThresholdRule, RateRule, OfflineRule, CorrelateRule, InactivityRule]
