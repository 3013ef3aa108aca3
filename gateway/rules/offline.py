"""`offline` rules: no frame of any kind for k x heartbeat + grace (protocols.md §4), or the driver's own
`offline` event (polled devices); the next frame, or an `online` event, clears. Monotonic time only."""

from __future__ import annotations

from gateway.model import Device, Event, EventKind, Item, replay_suspect
from gateway.rules.match import Signal
from gateway.rules.schema import OfflineRule


class OfflineEvaluator:
    def __init__(self, rule: OfflineRule, devices: list[Device], now: float) -> None:
        self.rule = rule
        # Every device gets a full timeout after start: a restart is not evidence of silence.
        self._last_seen = {d.id: now for d in devices}
        self._timeout = {d.id: self.timeout_s(d) for d in devices}
        self._offline: set[str] = set()

    def timeout_s(self, d: Device) -> float:
        if d.heartbeat_s > 0:
            return self.rule.heartbeat_factor * d.heartbeat_s + self.rule.grace_s
        return self.rule.timeout_s  # polled: 0 means the driver's offline events decide

    def on_item(self, item: Item, device: Device, now: float) -> list[Signal]:
        if isinstance(item, Event) and item.kind == EventKind.OFFLINE:
            if item.device_id in self._offline:
                return []
            self._offline.add(item.device_id)
            return [Signal(True, item.device_id, {"source": "driver", "code": item.code}, item.stamp)]
        if replay_suspect(item):
            return []  # a replayed recording is no sign of life
        self._last_seen[item.device_id] = now
        if item.device_id in self._offline:
            self._offline.discard(item.device_id)
            return [Signal(False, item.device_id, {"source": "frame"}, item.stamp)]
        return []

    def tick(self, now: float) -> list[Signal]:
        out = []
        for device_id, seen in self._last_seen.items():
            limit = self._timeout.get(device_id, 0.0)
            if limit > 0 and device_id not in self._offline and now - seen > limit:
                self._offline.add(device_id)
                out.append(Signal(True, device_id, {"source": "silence", "silent_s": round(now - seen, 1), "limit_s": limit}))
        return out

    def reset(self, device_id: str, now: float) -> None:
        # Cleared by hand while still silent: give it a fresh timeout rather than re-raising at once.
        self._offline.discard(device_id)
        if device_id in self._last_seen:
            self._last_seen[device_id] = now

    def restore(self, device_id: str, now: float) -> None:
        self._offline.add(device_id)
