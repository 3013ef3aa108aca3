"""`threshold` rules: `field op limit` for at least for_s raises; past the clear level for clear_for_s clears.

Between limit and clear level (the hysteresis band) nothing changes, so a value hovering at the limit
neither flaps nor spams. Durations are monotonic; the last value is held between readings.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.model import Device, Item, Stamp
from gateway.rules.match import COMPARE, Signal, reading_value
from gateway.rules.schema import ThresholdRule


@dataclass
class _State:
    active: bool = False
    since: float | None = None  # the raise (or, when active, the clear) condition holds since
    value: float = 0.0


class ThresholdEvaluator:
    def __init__(self, rule: ThresholdRule) -> None:
        self.rule = rule
        self._cmp = COMPARE[rule.op]
        self._high = rule.op in (">", ">=")
        self._clear = rule.limit if rule.clear is None else rule.clear
        self._state: dict[str, _State] = {}

    def _clears(self, v: float) -> bool:
        beyond = v <= self._clear if self._high else v >= self._clear
        return beyond and not self._cmp(v, self.rule.limit)

    def on_item(self, item: Item, device: Device, now: float) -> list[Signal]:
        v = reading_value(item, self.rule.field)
        if v is None:
            return []
        st = self._state.setdefault(item.device_id, _State())
        st.value = v
        if st.active:
            holds = self._clears(v)
        else:
            holds = self._cmp(v, self.rule.limit)
        if not holds:
            st.since = None
            return []
        if st.since is None:
            st.since = now
        return self._due(item.device_id, st, now, item.stamp)

    def _due(self, device_id: str, st: _State, now: float, stamp: Stamp | None = None) -> list[Signal]:
        wait = self.rule.clear_for_s if st.active else self.rule.for_s
        if st.since is None or now - st.since < wait:
            return []
        st.active = not st.active
        st.since = None
        detail = {"field": self.rule.field, "value": st.value, "limit": self.rule.limit}
        return [Signal(st.active, device_id, detail, stamp)]

    def tick(self, now: float) -> list[Signal]:
        out: list[Signal] = []
        for device_id, st in self._state.items():
            if st.since is not None:
                out += self._due(device_id, st, now)
        return out

    def reset(self, device_id: str, now: float) -> None:
        self._state.pop(device_id, None)

    def restore(self, device_id: str, now: float) -> None:
        self._state[device_id] = _State(active=True)
