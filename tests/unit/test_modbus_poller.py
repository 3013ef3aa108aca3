"""Poll schedule: capped exponential backoff, offline after N failures, catch-up after a stall."""

from __future__ import annotations

from drivers.modbus.poller import Schedule, SlaveState


def make(n: int = 2, period: float = 1.0, cap: float = 8.0, offline_after: int = 3, catch_up: int = 3) -> Schedule:
    return Schedule([SlaveState(u, period, 0.0) for u in range(1, n + 1)], cap, offline_after, catch_up)


def test_silent_slave_backs_off_exponentially_up_to_the_cap_and_goes_offline_once():
    sch = make()
    s = sch.slaves[1]
    delays, offline = [], []
    now = 0.0
    for _ in range(7):
        offline.append(sch.failed(s, now, "timeout"))
        delays.append(s.next_due - now)
        now = s.next_due
    assert delays == [1, 2, 4, 8, 8, 8, 8]
    assert offline == [False, False, True, False, False, False, False]
    assert s.state == "offline"
    assert sch.succeeded(s, now) is True and s.state == "ok"
    assert sch.succeeded(s, now + 1) is False


def test_due_picks_the_most_overdue_and_never_a_busy_slave():
    sch = make(3)
    sch.slaves[1].next_due, sch.slaves[2].next_due, sch.slaves[3].next_due = 5.0, 3.0, 4.0
    sch.slaves[2].busy = True
    assert sch.due(10.0).unit == 3
    assert sch.due(3.5) is None
    assert sch.next_wake() == 4.0


def test_polls_delayed_by_a_stall_are_caught_up_but_not_beyond_the_limit():
    sch = make(1, catch_up=3)
    s = sch.slaves[1]
    s.next_due = 10.0
    sch.succeeded(s, 13.0)  # polled 3 s late (another slave's timeout)
    assert s.next_due == 11.0  # next slot stays on the fixed-rate grid: due at once
    s.next_due = 10.0
    sch.succeeded(s, 30.0)  # 20 s late: resynchronise instead of a burst of 20 polls
    assert s.next_due == 30.0
