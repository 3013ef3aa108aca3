"""`rate` rules: a field moves by more than `delta` within window_s (hydrant pressure falls > 0.2 MPa in
30 s: opened or broken). Clears once no such move has been seen for clear_for_s (default: the window)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gateway.model import Device, Item
from gateway.rules.match import Signal, reading_value
from gateway.rules.schema import RateRule

SAMPLES_MAX = 512  # per device and extreme: bounds memory if a device reports far faster than the window needs


@dataclass
class _State:
    # Monotonic queues of (t, value) over the window: highs[0] is the window's maximum, lows[0] its
    # minimum, so each reading costs O(1) amortised however many samples the window holds.
    highs: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=SAMPLES_MAX))
    lows: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=SAMPLES_MAX))
    active: bool = False
    last_move: float = 0.0


class RateEvaluator:
    def __init__(self, rule: RateRule) -> None:
        self.rule = rule
        self._quiet_s = rule.window_s if rule.clear_for_s is None else rule.clear_for_s
        self._state: dict[str, _State] = {}

    def _move(self, st: _State, now: float, v: float) -> float:
        """The largest change into `v` from a sample in the window, signed by the rule's direction;
        then `v` joins the window."""
        for q in (st.highs, st.lows):
            while q and now - q[0][0] > self.rule.window_s:
                q.popleft()
        fall = st.highs[0][1] - v if st.highs else 0.0
        rise = v - st.lows[0][1] if st.lows else 0.0
        while st.highs and st.highs[-1][1] <= v:
            st.highs.pop()
        st.highs.append((now, v))
        while st.lows and st.lows[-1][1] >= v:
            st.lows.pop()
        st.lows.append((now, v))
        if self.rule.direction == "fall":
            return fall
        if self.rule.direction == "rise":
            return rise
        return max(fall, rise)

    def on_item(self, item: Item, device: Device, now: float) -> list[Signal]:
        v = reading_value(item, self.rule.field)
        if v is None:
            return []
        st = self._state.setdefault(item.device_id, _State())
        moved = self._move(st, now, v)
        if moved <= self.rule.delta:
            return []
        st.last_move = now
        if st.active:
            return []
        st.active = True
        detail = {"field": self.rule.field, "change": round(moved, 6), "window_s": self.rule.window_s}
        return [Signal(True, item.device_id, detail, item.stamp)]

    def tick(self, now: float) -> list[Signal]:
        out = []
        for device_id, st in self._state.items():
            if st.active and now - st.last_move >= self._quiet_s:
                st.active = False
                out.append(Signal(False, device_id, {"field": self.rule.field}))
        return out

    def reset(self, device_id: str, now: float) -> None:
        self._state.pop(device_id, None)

    def restore(self, device_id: str, now: float) -> None:
        self._state[device_id] = _State(active=True, last_move=now)
