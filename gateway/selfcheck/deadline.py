"""The 10 s reporting deadline as a fault: an alarm record that an uplink has not had confirmed within
`deadline_s` of its arrival turns the local trouble signal on (issue 23; GB 26875.1 §4.1: fire alarms at
the centre within 10 s, a failed transmission signalled locally).

A trouble-monitor check (gateway/trouble.py `Check`): one indexed read of the oldest unconfirmed ALARM
record per uplink consumer, every check period. Worst case from arrival to the trouble output:
deadline_s + the trouble monitor's check_period_s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from gateway.model import RecordClass, Stamp

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.store.record import Record

DEADLINE_S = 10.0
LABELS = {"gb26875": "fire centre", "mqtt": "platform"}


class PendingReader(Protocol):
    def fetch(self, consumer: str, limit: int, exclude: Iterable[int] = (), classes: Iterable[RecordClass] | None = None) -> list[Record]: ...


class ReportDeadline:
    def __init__(self, outbox: PendingReader, clock: Clock, consumers: Iterable[str], deadline_s: float = DEADLINE_S) -> None:
        self.outbox = outbox
        self.clock = clock
        self.consumers = tuple(consumers)
        self.deadline_s = deadline_s

    def age_s(self, stamp: Stamp) -> float:
        if stamp.boot_id == self.clock.boot_id:
            return (self.clock.monotonic_ns() - stamp.mono_ns) / 1e9
        return self.clock.wall() - stamp.wall_s  # from an earlier boot: the wall clock is all we have

    def trouble_reason(self) -> str:
        late = []
        for consumer in self.consumers:
            pending = self.outbox.fetch(consumer, 1, classes=(RecordClass.ALARM,))
            if pending and (age := self.age_s(pending[0].stamp)) > self.deadline_s:
                late.append(f"alarm seq {pending[0].seq} not confirmed by the {LABELS.get(consumer, consumer)} "
                            f"for {age:.0f} s")
        return "; ".join(late)
