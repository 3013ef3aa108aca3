"""查岗 bookkeeping: the window, a missed check counted once, button presses before the request ignored."""

from __future__ import annotations

from collections import Counter

import pytest
import structlog

from gateway.clock import ManualClock
from gateway.errors import CommandRejected
from gateway.uplink.gb26875.operator import OperatorChecks


def checks() -> tuple[OperatorChecks, ManualClock, Counter]:
    clock, counters = ManualClock(), Counter()
    return OperatorChecks(clock, structlog.get_logger(), counters), clock, counters


def test_a_check_unanswered_past_its_window_is_missed_once_and_can_no_longer_be_confirmed():
    c, clock, counters = checks()
    c.requested(60.0)
    clock.advance(61.0)
    c.expire()
    c.expire()
    assert counters["operator_checks_missed"] == 1
    with pytest.raises(CommandRejected) as err:
        c.confirm("guard-zhang")
    assert err.value.reason == "no_operator_check"
    assert c.answers == []


def test_confirm_within_the_window_queues_one_answer():
    c, clock, counters = checks()
    c.requested(60.0)
    clock.advance(59.0)
    c.confirm("cli:guard-zhang")
    assert c.answers == ["cli:guard-zhang"] and counters["operator_checks_answered"] == 1
    with pytest.raises(CommandRejected):
        c.confirm("again")  # one answer per check


def test_button_pressed_before_the_request_does_not_answer_it():
    c, clock, _ = checks()
    early = clock.now()
    clock.advance(5.0)
    c.requested(60.0)
    assert not c.button_pressed("relay", early)
    clock.advance(1.0)
    assert c.button_pressed("relay", clock.now())
    assert c.answers == ["button:relay"]
