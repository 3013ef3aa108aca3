"""`correlate` rules: condition A and condition B in the same scope within a window.

mode "both": A and B within within_s, in either order -> raise on A's device (water flow on a riser and a
smoke alarm in the same building within 120 s: fire confirmed). mode "a_without_b": A and no B within
within_s after it (or before it) -> raise on A's device (flow without a fire alarm: hydrant misuse).
A turning false (flow stopped, the event's clearing event) is the auto-clear.
"""

from __future__ import annotations

from gateway.model import Device, Event, Item, Reading, Stamp
from gateway.rules.match import COMPARE, Signal, number, selects
from gateway.rules.schema import CLEARED_BY, Condition, CorrelateRule


def state(c: Condition, item: Item) -> bool | None:
    """True/False when the item says the condition holds/ended; None when the item says nothing about it."""
    if c.event is not None:
        if not isinstance(item, Event) or (c.code and item.code and item.code != c.code):
            return None
        if item.kind == c.event:
            return True if not c.code or item.code == c.code else None
        return False if item.kind == CLEARED_BY.get(c.event) else None
    if isinstance(item, Reading) and c.field is not None:
        v = number(item.values, c.field)
        return None if v is None else COMPARE[c.op](v, c.value)
    return None


class CorrelateEvaluator:
    def __init__(self, rule: CorrelateRule) -> None:
        self.rule = rule
        self._last_a: dict[str, tuple[float, str]] = {}  # A device -> (time A last held, scope)
        self._last_b: dict[str, float] = {}  # scope -> time B last held
        self._pending: dict[str, tuple[float, str]] = {}  # a_without_b: A device -> (A since, scope)
        self._active: set[str] = set()

    def _scope(self, device: Device) -> str:
        return device.location.building if self.rule.scope == "building" else ""

    def on_item(self, item: Item, device: Device, now: float) -> list[Signal]:
        out: list[Signal] = []
        scope = self._scope(device)
        if selects(self.rule.b, device) and state(self.rule.b, item):
            self._last_b[scope] = now
            out += self._on_b(scope, now, item)
        if selects(self.rule.a, device):
            a = state(self.rule.a, item)
            if a:
                out += self._on_a(item.device_id, scope, now, item)
            elif a is False:
                self._pending.pop(item.device_id, None)
                self._last_a.pop(item.device_id, None)
                if item.device_id in self._active:
                    self._active.discard(item.device_id)
                    out.append(Signal(False, item.device_id, {"a": False}, item.stamp))
        return out

    def _b_recent(self, scope: str, now: float) -> bool:
        t = self._last_b.get(scope)
        return t is not None and now - t <= self.rule.within_s

    def _on_a(self, device_id: str, scope: str, now: float, item: Item) -> list[Signal]:
        first = device_id not in self._last_a
        self._last_a[device_id] = (now, scope)
        if device_id in self._active:
            return []
        if self.rule.mode == "both":
            if self._b_recent(scope, now):
                return [self._raise(device_id, scope, item.stamp)]
            return []
        if first and not self._b_recent(scope, now) and device_id not in self._pending:
            self._pending[device_id] = (now, scope)
        return []

    def _on_b(self, scope: str, now: float, item: Item) -> list[Signal]:
        out = []
        for device_id, (t, s) in list(self._last_a.items()):
            if s != scope or now - t > self.rule.within_s:
                continue
            if self.rule.mode == "both" and device_id not in self._active:
                out.append(self._raise(device_id, scope, item.stamp))
            self._pending.pop(device_id, None)  # a_without_b: there is a fire alarm, not misuse
        return out

    def _raise(self, device_id: str, scope: str, stamp: Stamp | None = None) -> Signal:
        self._active.add(device_id)
        return Signal(True, device_id, {"scope": scope, "within_s": self.rule.within_s, "mode": self.rule.mode}, stamp)

    def tick(self, now: float) -> list[Signal]:
        out = []
        for device_id, (t, scope) in list(self._pending.items()):
            if now - t >= self.rule.within_s:
                del self._pending[device_id]
                out.append(self._raise(device_id, scope))
        return out

    def reset(self, device_id: str, now: float) -> None:
        self._active.discard(device_id)
        self._pending.pop(device_id, None)

    def restore(self, device_id: str, now: float) -> None:
        self._active.add(device_id)
