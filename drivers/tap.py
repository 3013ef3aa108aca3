"""The radio tap (issue 20 `lora_listen`): a bounded list of observers a driver tells about every frame
it received, after handling it. Observers are isolated: one that raises is removed and counted, so a
diagnostic can never break or slow the receive path beyond one call per frame."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.base import Heard, RadioObserver
from gateway.errors import CommandRejected

MAX_OBSERVERS = 2  # one remote/local listen at a time, plus a spare for an installer's second view


class Tap:
    def __init__(self, log: Any, limit: int = MAX_OBSERVERS) -> None:
        self.log = log
        self.limit = limit
        self.observers: list[RadioObserver] = []
        self.errors = 0  # observers that raised (and were removed)

    def __bool__(self) -> bool:
        """Cheap test on the receive path: build a Heard only when somebody listens."""
        return bool(self.observers)

    def add(self, observer: RadioObserver) -> Callable[[], None]:
        if len(self.observers) >= self.limit:
            raise CommandRejected("busy", f"{self.limit} listeners already on this radio")
        self.observers.append(observer)
        return lambda: self.remove(observer)

    def remove(self, observer: RadioObserver) -> None:
        """Idempotent: the window's end and the caller's cleanup may both remove it."""
        if observer in self.observers:
            self.observers.remove(observer)

    def notify(self, heard: Heard) -> None:
        for observer in tuple(self.observers):
            try:
                observer(heard)
            except Exception as exc:  # noqa: BLE001 - a diagnostic's bug must never reach the radio path
                self.errors += 1
                self.remove(observer)
                self.log.warning("radio_observer_failed", error=repr(exc)[:200])
