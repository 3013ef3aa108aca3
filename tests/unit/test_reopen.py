"""The shared reopen helper and warn-once report (issue 16): first failure WARNING, repeats DEBUG, recovery one
INFO; delays follow gateway.clock.Backoff and start afresh once the port worked."""

from __future__ import annotations

import random
from typing import Any

from drivers.reopen import Reopen
from gateway.errors import FailureLog


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _at(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((level, event, kw))

    def __getattr__(self, level: str) -> Any:
        return self._at(level)


def test_first_failure_warns_repeats_debug_recovery_info_once() -> None:
    log = Recorder()
    report = FailureLog(log)
    assert report.recovered("port_reopened") is False and log.lines == []
    report.failed("port_lost", error="gone")
    report.failed("port_lost", error="gone")
    report.failed("port_lost", error="gone")
    assert report.recovered("port_reopened") is True
    assert report.recovered("port_reopened") is False
    assert [(lvl, ev) for lvl, ev, _ in log.lines] == [
        ("warning", "port_lost"), ("debug", "port_lost"), ("debug", "port_lost"), ("info", "port_reopened")]
    assert log.lines[-1][2] == {"after_failures": 3}


def test_reopen_delays_grow_to_the_cap_and_restart_after_success() -> None:
    reopen = Reopen(Recorder(), cap_s=4.0, first_delay_s=0.5, rng=random.Random(1))
    delays = [reopen.failed("port_lost", OSError("gone")) for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 4, 4, 4, 4]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert reopen.tries == 8
    assert reopen.opened() is True and reopen.tries == 0
    assert reopen.failed("port_lost", OSError("again")) <= 0.5
