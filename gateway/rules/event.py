"""`event` rules: a device event kind (narrowed by code) raises; its clearing event clears (auto_clear)."""

from __future__ import annotations

from gateway.model import Device, Event, Item
from gateway.rules.match import Signal
from gateway.rules.schema import CLEARED_BY, EventRule


class EventEvaluator:
    def __init__(self, rule: EventRule) -> None:
        self.rule = rule
        self._kinds = frozenset(rule.events)
        self._clearing = {CLEARED_BY[k] for k in rule.events if k in CLEARED_BY}
        self._codes = frozenset(rule.codes)
        self._present: dict[str, dict[str, str | bool]] = {}  # device -> detail of its raising event not yet cleared

    def on_item(self, item: Item, device: Device, now: float) -> list[Signal]:
        if not isinstance(item, Event):
            return []
        detail: dict[str, str | bool] = {"kind": str(item.kind), "code": item.code}
        if item.detail.get("replay_suspect"):
            detail["replay_suspect"] = True  # the alarm record says the frame failed the replay check
        if item.detail.get("test") is True:
            detail["test"] = True  # `gateway test fire`: a test end to end (centre in test mode, SMS marked)
        if item.kind in self._kinds and (not self._codes or item.code in self._codes):
            self._present[item.device_id] = detail
            return [Signal(True, item.device_id, detail, item.stamp)]
        # A clearing event without a code (many detectors send a bare "alarm cleared") clears any code.
        if item.kind in self._clearing and (not self._codes or not item.code or item.code in self._codes):
            self._present.pop(item.device_id, None)
            return [Signal(False, item.device_id, detail, item.stamp)]
        return []

    def present(self, device_id: str) -> dict[str, str | bool] | None:
        """The raising event's detail if the condition has not been cleared by its device since."""
        return self._present.get(device_id)

    def tick(self, now: float) -> list[Signal]:
        return []

    def reset(self, device_id: str, now: float) -> None:
        pass

    def restore(self, device_id: str, now: float) -> None:
        pass  # stateless: a clearing event clears whatever is active
