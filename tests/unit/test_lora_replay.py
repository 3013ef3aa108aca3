"""Replay guard: wrap, forward window, duplicates, replays, counter reset only after a quiet time."""

from __future__ import annotations

import pytest

from drivers.lora.replay import ReplayGuard, Verdict
from gateway.errors import FrameError


def guard() -> ReplayGuard:
    return ReplayGuard(forward_window=100, reset_quiet_s=600)


def reason(g: ReplayGuard, fcnt: int, now: float = 0.0) -> str:
    with pytest.raises(FrameError) as exc:
        g.check(1, fcnt, now)
    return exc.value.reason


def test_first_frame_learns_then_increments_accept():
    g = guard()
    assert g.check(1, 500, 0) is Verdict.FIRST
    assert g.check(1, 501, 1) is Verdict.ACCEPT and g.check(1, 600, 2) is Verdict.ACCEPT


def test_counter_wraps_from_65535_to_0():
    g = guard()
    g.check(1, 65530, 0)
    assert g.check(1, 65535, 1) is Verdict.ACCEPT
    assert g.check(1, 0, 2) is Verdict.ACCEPT and g.check(1, 3, 3) is Verdict.ACCEPT


def test_duplicate_and_replay_are_rejected_with_their_reason():
    g = guard()
    g.check(1, 10, 0)
    g.check(1, 11, 1)
    assert reason(g, 11) == "duplicate"
    assert reason(g, 10) == "replay"
    assert g.last(1) == 11


def test_forward_window_boundary():
    g = guard()
    g.check(1, 1000, 0)
    assert g.check(1, 1100, 1) is Verdict.ACCEPT  # exactly +window
    assert reason(g, 1201) == "counter_jump"  # +window+1


def test_counter_reset_needs_the_quiet_time():
    g = guard()
    g.check(1, 4000, 0)
    assert reason(g, 0, now=599.0) == "replay"  # too soon: looks like a replayed early frame
    assert g.check(1, 0, 600.0) is Verdict.RESET
    assert g.check(1, 1, 601.0) is Verdict.ACCEPT


def test_large_counter_after_quiet_time_is_still_a_jump_not_a_reset():
    g = guard()
    g.check(1, 4000, 0)
    assert reason(g, 20000, now=10_000) == "counter_jump"


def test_devices_are_tracked_separately():
    g = guard()
    g.check(1, 5, 0)
    assert g.check(2, 5, 0) is Verdict.FIRST
