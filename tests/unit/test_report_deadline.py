"""An alarm record unconfirmed past 10 s is a fault (issue 23); confirmed or younger ones are not."""

from __future__ import annotations

from gateway.clock import ManualClock
from gateway.model import RecordClass
from gateway.selfcheck.deadline import ReportDeadline
from gateway.store.outbox import Record


class Pending:
    def __init__(self) -> None:
        self.rows: dict[str, list[Record]] = {"gb26875": [], "mqtt": []}

    def fetch(self, consumer, limit, exclude=(), classes=None):
        return [r for r in self.rows[consumer] if classes is None or r.cls in classes][:limit]


def test_overdue_alarm_is_reported_per_uplink():
    clock = ManualClock()
    outbox = Pending()
    deadline = ReportDeadline(outbox, clock, ["gb26875", "mqtt"])
    rec = Record(7, RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {})
    outbox.rows["gb26875"].append(rec)
    outbox.rows["mqtt"].append(rec)
    clock.advance(9.5)
    assert deadline.trouble_reason() == ""
    clock.advance(1.0)
    outbox.rows["mqtt"].clear()  # the platform confirmed it; the centre did not
    assert deadline.trouble_reason() == "alarm seq 7 not confirmed by the fire centre for 10 s"
    outbox.rows["gb26875"].clear()
    assert deadline.trouble_reason() == ""


def test_record_from_an_earlier_boot_uses_the_wall_clock():
    old = ManualClock(boot_id="boot-1")
    rec = Record(3, RecordClass.ALARM, "alarm.raised", "smoke-1", old.now(), {})
    clock = ManualClock(wall_s=old.wall() + 60, boot_id="boot-2")
    outbox = Pending()
    outbox.rows["gb26875"].append(rec)
    assert "for 60 s" in ReportDeadline(outbox, clock, ["gb26875"]).trouble_reason()
