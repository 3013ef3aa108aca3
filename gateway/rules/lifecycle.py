"""Alarm lifecycle, in memory and sans-IO: raised -> acknowledged -> cleared, one active per (rule, device).

Every state change returns a Transition; the engine persists it (with its outbox record) and runs the
actions. Repeats while active only count. Flapping: after `flap_max` raises within `flap_window_s`
an automatic clear is held until the condition has stayed clear for `flap_hold_s`.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.errors import CommandRejected
from gateway.model import Alarm, AlarmState, Severity, Stamp

if TYPE_CHECKING:
    from gateway.rules.schema import Rule

Key = tuple[str, str]  # (rule id, device id)


class Transition(msgspec.Struct, frozen=True):
    """One change of an alarm, as persisted and uplinked. `alarm` is a snapshot after the change."""

    kind: str  # raised | repeated | acknowledged | silenced | cleared | escalated
    alarm: Alarm
    by: str
    stamp: Stamp
    detail: dict[str, Any] = {}


@dataclass
class Active:
    """Runtime state of one active alarm beside its persisted Alarm."""

    alarm: Alarm
    since_mono: float  # monotonic time of the raise (re-based on restore: escalation and sounder timers)
    sounds: bool = False  # the rule asked for the sounder
    silenced: bool = False
    tier: int = 0  # escalation tiers reached
    clear_held_since: float | None = None  # flapping: clear requested, held
    detail: dict[str, Any] = field(default_factory=dict)


def new_alarm_id() -> str:
    return uuid.uuid4().hex[:16]


class AlarmBook:
    def __init__(self) -> None:
        self.by_key: dict[Key, Active] = {}
        self.by_id: dict[str, Active] = {}
        self._raises: dict[Key, deque[float]] = {}
        self.counters = {"raised": 0, "repeats": 0, "cleared": 0, "clears_held": 0}

    def active(self) -> list[Alarm]:
        return sorted((a.alarm for a in self.by_key.values()), key=lambda a: (a.severity, a.raised.wall_s))

    def get(self, alarm_id: str) -> Active:
        act = self.by_id.get(alarm_id)
        if act is None:
            raise CommandRejected("unknown_alarm", f"no active alarm {alarm_id!r}")
        return act

    def _transition(self, kind: str, act: Active, by: str, stamp: Stamp, detail: dict[str, Any] | None = None) -> Transition:
        act.alarm.updated = stamp
        return Transition(kind, msgspec.structs.replace(act.alarm), by, stamp, detail or {})

    def raise_(self, rule: Rule, device_id: str, stamp: Stamp, now: float, detail: dict[str, Any], sounds: bool) -> Transition:
        """Raise, or count a repeat of the active alarm (a repeat also cancels a held clear)."""
        key = (rule.id, device_id)
        act = self.by_key.get(key)
        if act is not None:
            act.alarm.repeats += 1
            act.clear_held_since = None
            act.detail.update(detail)
            self.counters["repeats"] += 1
            return self._transition("repeated", act, "", stamp, detail)
        raises = self._raises.setdefault(key, deque(maxlen=rule.flap_max))
        raises.append(now)
        alarm = Alarm(
            id=new_alarm_id(), rule=rule.id, device_id=device_id, severity=Severity(rule.level),
            state=AlarmState.RAISED, title=rule.label, raised=stamp, updated=stamp,
        )
        act = Active(alarm, since_mono=now, sounds=sounds, detail=dict(detail))
        self.by_key[key] = act
        self.by_id[alarm.id] = act
        self.counters["raised"] += 1
        return self._transition("raised", act, "", stamp, detail)

    def flapping(self, rule: Rule, key: Key, now: float) -> bool:
        raises = self._raises.get(key)
        return raises is not None and len(raises) >= rule.flap_max and now - raises[0] <= rule.flap_window_s

    def auto_clear(self, rule: Rule, device_id: str, stamp: Stamp, now: float, detail: dict[str, Any]) -> Transition | None:
        """The condition ended. None when nothing is active or the clear is held (flapping)."""
        key = (rule.id, device_id)
        act = self.by_key.get(key)
        if act is None or not rule.auto_clear:
            return None
        if self.flapping(rule, key, now):
            if act.clear_held_since is None:
                act.clear_held_since = now
                self.counters["clears_held"] += 1
            return None
        return self._end(act, "auto", stamp, detail)

    def held_clears_due(self, rules: Mapping[str, Rule], stamp: Stamp, now: float) -> list[tuple[Transition, Active]]:
        out = []
        for act in list(self.by_key.values()):
            rule = rules.get(act.alarm.rule)
            if act.clear_held_since is not None and rule is not None and now - act.clear_held_since >= rule.flap_hold_s:
                out.append((self._end(act, "auto", stamp, {"flapping": True}), act))
        return out

    def _end(self, act: Active, by: str, stamp: Stamp, detail: dict[str, Any]) -> Transition:
        act.alarm.state = AlarmState.CLEARED
        act.alarm.cleared_by = by
        del self.by_key[(act.alarm.rule, act.alarm.device_id)]
        del self.by_id[act.alarm.id]
        self.counters["cleared"] += 1
        return self._transition("cleared", act, by, stamp, detail)

    def clear(self, alarm_id: str, by: str, stamp: Stamp) -> Transition:
        return self._end(self.get(alarm_id), by, stamp, {})

    def ack(self, alarm_id: str, by: str, stamp: Stamp) -> Transition | None:
        """None when already acknowledged (idempotent: the button may be held over several polls)."""
        act = self.get(alarm_id)
        if act.alarm.state == AlarmState.ACKNOWLEDGED:
            return None
        act.alarm.state = AlarmState.ACKNOWLEDGED
        act.alarm.acknowledged_by = by
        return self._transition("acknowledged", act, by, stamp)

    def silence(self, alarm_id: str, by: str, stamp: Stamp) -> Transition | None:
        """Sounder off; the alarm stays unacknowledged and escalation goes on."""
        act = self.get(alarm_id)
        if act.silenced or act.alarm.state != AlarmState.RAISED:
            return None
        act.silenced = True
        return self._transition("silenced", act, by, stamp)

    def escalate(self, act: Active, tier: int, stamp: Stamp, detail: dict[str, Any]) -> Transition:
        act.tier = tier + 1
        return self._transition("escalated", act, "", stamp, {"tier": tier, **detail})

    def supersede(self, stored: Active, stamp: Stamp, by_alarm: str) -> Transition:
        """A stored alarm found active after the store came back, while the same (rule, device) was
        raised again meanwhile: close the stored one (it never enters the book)."""
        stored.alarm.state = AlarmState.CLEARED
        stored.alarm.cleared_by = f"superseded:{by_alarm}"
        self.counters["cleared"] += 1
        return self._transition("cleared", stored, stored.alarm.cleared_by, stamp, {"superseded_by": by_alarm})

    def restore(self, act: Active) -> None:
        key = (act.alarm.rule, act.alarm.device_id)
        self.by_key[key] = act
        self.by_id[act.alarm.id] = act
