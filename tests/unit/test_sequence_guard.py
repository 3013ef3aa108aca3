"""The shared anti-replay rule (drivers/sequence.py): above the mark always accepted, duplicates and
suspects, the reorder window, re-sync that cannot deafen, state that survives a restart, and the
property that no replayed or old frame can make a later genuine frame be rejected."""

from __future__ import annotations

import structlog
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.counters import CounterStore
from drivers.sequence import SequenceGuard, Verdict, screen
from gateway.clock import ManualClock
from gateway.model import Event, EventKind, Reading

LOG = structlog.get_logger("test")


def guard(state_dir=None, window: int = 0, k: int = 3, min_s: float = 60.0) -> SequenceGuard:
    return SequenceGuard(CounterStore(state_dir, "t", LOG), "lora", window, k, min_s)


def v(g: SequenceGuard, counter: int, digest: str | None = None, now: float = 0.0) -> Verdict:
    return g.check("dev", counter, digest or f"d{counter}", now).verdict


def test_first_frame_learns_then_any_higher_counter_is_accepted_however_far():
    g = guard()
    assert v(g, 5) is Verdict.LEARN
    assert v(g, 6) is Verdict.ACCEPT and v(g, 60_000) is Verdict.ACCEPT  # no forward window any more
    assert g.last("dev") == 60_000


def test_same_counter_same_content_is_a_duplicate_other_content_a_suspect():
    g = guard()
    v(g, 10)
    assert v(g, 10) is Verdict.DUPLICATE
    assert v(g, 10, "other") is Verdict.SUSPECT
    assert v(g, 3) is Verdict.SUSPECT and g.last("dev") == 10
    assert g.stats("dev")["duplicates"] == 1 and g.stats("dev")["replay_suspects"] == 2


def test_reorder_window_accepts_an_unseen_late_counter_once():
    g = guard(window=16)
    v(g, 100)
    v(g, 102)
    assert v(g, 101) is Verdict.ACCEPT  # UDP reordering
    assert v(g, 101) is Verdict.DUPLICATE
    assert v(g, 85) is Verdict.SUSPECT  # below the window


def test_resync_needs_k_strictly_increasing_frames_spanning_the_minimum_time():
    g = guard(k=3, min_s=60)
    v(g, 5000)
    assert v(g, 0, now=0) is Verdict.SUSPECT
    assert v(g, 1, now=30) is Verdict.SUSPECT
    assert v(g, 2, now=59) is Verdict.SUSPECT  # three frames, but not yet 60 s
    assert v(g, 3, now=60) is Verdict.RESYNC
    assert g.last("dev") == 3 and v(g, 4, now=61) is Verdict.ACCEPT


def test_a_genuine_frame_above_the_mark_breaks_a_resync_run():
    g = guard(k=3, min_s=0)
    v(g, 5000)
    v(g, 1)
    v(g, 2)
    assert v(g, 5001) is Verdict.ACCEPT  # the device is alive in its epoch: 1, 2 were replays
    assert v(g, 3) is Verdict.SUSPECT and v(g, 4) is Verdict.SUSPECT and v(g, 5) is Verdict.RESYNC


def test_state_survives_a_restart_so_the_first_frame_after_it_is_not_trusted(tmp_path):
    g = guard(tmp_path)
    v(g, 7)
    v(g, 8)
    g.store.flush_sync()
    again = guard(tmp_path)
    assert v(again, 5) is Verdict.SUSPECT and again.last("dev") == 8
    assert v(again, 8) is Verdict.DUPLICATE and v(again, 9) is Verdict.ACCEPT


def test_screen_passes_only_alarms_flagged_for_a_suspect():
    clock = ManualClock()
    stamp = clock.now()
    items = [Reading("d", stamp, {"alarm": True}), Event("d", EventKind.ALARM, stamp, code="smoke"),
             Event("d", EventKind.ALARM_CLEARED, stamp, code="smoke")]
    passed, dropped = screen(items, Verdict.SUSPECT)
    assert dropped == 2 and len(passed) == 1
    assert passed[0].kind == EventKind.ALARM and passed[0].detail == {"replay_suspect": True}
    assert screen(items, Verdict.ACCEPT) == (items, 0) and screen(items, Verdict.DUPLICATE) == ([], 3)


# One device's history: genuine frames (strictly increasing counters), replays of any earlier frame,
# forged-looking old counters with other content, and gateway restarts (state re-read from disk).
op = st.one_of(
    st.tuples(st.just("genuine"), st.integers(1, 3000)),
    st.tuples(st.just("replay"), st.integers(0, 10_000)),
    st.tuples(st.just("old"), st.integers(0, 70_000)),
    st.tuples(st.just("restart"), st.just(0)),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.integers(0, 1000), st.lists(op, max_size=60), st.integers(2, 4), st.sampled_from([0, 16]))
def test_no_replayed_or_old_frame_makes_a_frame_above_every_seen_counter_rejected(tmp_path_factory, start, ops, k, window):
    state = tmp_path_factory.mktemp("state")
    g = guard(state, window=window, k=k, min_s=0)
    sent: list[tuple[int, str]] = []
    highest = -1  # the highest counter the gateway has been shown, by anyone
    counter, now = start, 0.0
    for kind, n in ops:
        now += 1.0
        if kind == "restart":
            g.store.flush_sync()
            g = guard(state, window=window, k=k, min_s=0)
            continue
        if kind == "genuine":
            counter += n
            frame = (counter, f"g{counter}")
            sent.append(frame)
        elif kind == "replay" and sent:
            frame = sent[n % len(sent)]
        else:
            frame = (n % (highest + 1) if highest >= 0 else 0, f"x{n}")
        verdict = g.check("dev", frame[0], frame[1], now).verdict
        if frame[0] > highest:
            assert verdict.accepted, (frame, highest, verdict)
        highest = max(highest, frame[0])


def test_unwritable_state_dir_keeps_working_in_memory_and_says_so(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    g = guard(blocker)
    v(g, 1)
    g.store.flush_sync()
    assert v(g, 1) is Verdict.DUPLICATE and v(g, 2) is Verdict.ACCEPT
    h = g.store.health()
    assert h["persisted"] is False and "cannot write" in h["error"] and g.store.counters["state_write_failed"] == 1


def test_corrupt_state_file_is_counted_and_ignored(tmp_path):
    (tmp_path / "counters-t.json").write_bytes(b"\x00garbage{")
    g = guard(tmp_path)
    assert g.store.counters["state_corrupt"] == 1 and not g.store.persisted
    assert v(g, 3) is Verdict.LEARN
    g.store.flush_sync()  # the next good write replaces it
    assert g.store.persisted and guard(tmp_path).last("dev") == 3


def test_write_ahead_reservation_never_reuses_a_counter_after_a_crash(tmp_path):
    s = CounterStore(tmp_path, "t", LOG)
    assert s.reserve("tx", 16) == 0
    s.flush_sync()
    crashed = CounterStore(tmp_path, "t", LOG)  # no clean stop: only the reservation reached the disk
    assert crashed.reserve("tx", 16) == 16


forge = st.one_of(
    st.tuples(st.just("genuine"), st.integers(1, 3000), st.booleans()),  # (kind, step, is an alarm)
    st.tuples(st.just("replay"), st.integers(0, 10_000), st.booleans()),
    st.tuples(st.just("forged"), st.integers(0, 70_000), st.booleans()),  # keyless: any counter, even above
    st.tuples(st.just("restart"), st.just(0), st.just(False)),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.lists(forge, max_size=60))
def test_a_genuine_alarm_frame_always_emits_its_alarm_whatever_came_before(tmp_path_factory, ops):
    state = tmp_path_factory.mktemp("state")
    g = guard(state, k=3, min_s=0)
    stamp = ManualClock().now()
    sent: list[tuple[int, str, bool]] = []
    counter = 0
    for kind, n, alarm in ops:
        if kind == "restart":
            g.store.flush_sync()
            g = guard(state, k=3, min_s=0)
            continue
        if kind == "genuine":
            counter += n
            frame = (counter, f"g{counter}", alarm)
            sent.append(frame)
        elif kind == "replay" and sent:
            frame = sent[n % len(sent)]
        else:
            frame = (n, f"f{n}", alarm)
        items = [Event("d", EventKind.ALARM if frame[2] else EventKind.HEARTBEAT, stamp)]
        out, _ = screen(items, g.check("dev", frame[0], frame[1], 0.0).verdict)
        if kind == "genuine" and alarm:
            assert [i.kind for i in out] == [EventKind.ALARM], frame
