"""What every rule kind shares: device matching, comparisons, numeric field access and the Signal type."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.errors import GatewayError
from gateway.model import Device, Item, Reading, Stamp

COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


class BadValue(GatewayError):
    """A reading's field is present but not a finite number; the rule skips it and counts it."""

    def __init__(self, field_name: str, value: Any) -> None:
        self.field = field_name
        self.value = value
        super().__init__(f"{field_name}: {value!r} is not a number")


@dataclass(frozen=True)
class Signal:
    """An evaluator's verdict for one device: raise or clear. `stamp` None means "now" (a timer fired)."""

    raise_: bool
    device_id: str
    detail: dict[str, Any] = field(default_factory=dict)
    stamp: Stamp | None = None


class Evaluator(Protocol):
    """One rule kind's state machine: sans-IO, synchronous, fed in arrival order."""

    rule: Any

    def on_item(self, item: Item, device: Device, now: float) -> list[Signal]: ...

    def tick(self, now: float) -> list[Signal]: ...

    def reset(self, device_id: str, now: float) -> None:
        """The alarm was cleared by command: forget the latched state so the condition can raise again."""

    def restore(self, device_id: str, now: float) -> None:
        """An alarm of this rule on this device was active before the restart: start latched, so the
        condition's end still clears it and a still-present condition does not raise it twice."""


def selects(m: Any, device: Device) -> bool:
    """A Match (rule or condition) selects this device. No criteria at all selects every device."""
    if not (m.devices or m.types or m.profiles):
        return True
    return device.id in m.devices or device.profile in m.profiles or device.type in m.types


def reading_value(item: Item, name: str) -> float | None:
    """The field of a Reading as a float; None for events and readings without it; BadValue if not a number."""
    return number(item.values, name) if isinstance(item, Reading) else None


def number(values: dict[str, Any], name: str) -> float | None:
    """The field as a float; None when the reading does not carry it; BadValue when it is not a number."""
    if name not in values:
        return None
    v = values[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        raise BadValue(name, v)
    return float(v)
