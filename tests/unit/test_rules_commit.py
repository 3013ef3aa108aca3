"""The alarm committer (gateway/rules/commit.py) on a real SQLite file: order kept across a failing store,
repeats coalesced only when the queue is deep, a transition that cannot be written rejected alone while
the rest of its batch commits, `submit_first` jumping the queue, listeners told the seq of each commit."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from gateway.clock import ManualClock
from gateway.errors import StoreError
from gateway.rules import commit
from gateway.rules.commit import Committer
from gateway.rules.lifecycle import AlarmBook
from tests.unit.rules_support import FakeContext, SqliteOutbox, rules

Pending = commit.Pending  # through the committer: the alarm SQL module is being renamed (issue 16)

(SMOKE,) = rules([{"kind": "event", "id": "smoke", "severity": "critical", "types": ["smoke"], "events": ["alarm"]}])


@pytest.fixture
async def rig(tmp_path, monkeypatch):
    monkeypatch.setattr(commit, "RETRY_S", 0.01)  # the retry pause, not a wait for a result
    clock, ctx, outbox = ManualClock(), FakeContext(), SqliteOutbox(tmp_path / "o.db")
    c = Committer(outbox, ctx, clock, structlog.get_logger("test"))
    task = asyncio.create_task(c.run())
    yield c, outbox, ctx, clock
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    outbox.close()


def pending(book: AlarmBook, clock: ManualClock, device: str, kind: str = "raise") -> Pending:
    if kind == "raise":
        t = book.raise_(SMOKE, device, clock.now(), 0.0, {}, sounds=True)
    else:
        t = book.clear(book.by_key[("smoke", device)].alarm.id, "guard", clock.now())
    return Pending(t, {"alarm_id": t.alarm.id, "transition": t.kind}, 0, False, {})


async def test_transitions_commit_in_order_with_their_records_and_wake_the_uplink(rig):
    c, outbox, ctx, clock = rig
    book = AlarmBook()
    seen: list[tuple[str, int]] = []
    c.listeners.append(lambda p, seq, _ns: seen.append((p.transition.kind, seq)))
    for p in (pending(book, clock, "smoke-401"), pending(book, clock, "smoke-502"), pending(book, clock, "smoke-401", "clear")):
        c.submit(p)
    await asyncio.wait_for(c.flush(), 5)
    assert [(k, d) for _s, k, d, _b in outbox.records("alarm.")] == [
        ("alarm.raised", "smoke-401"), ("alarm.raised", "smoke-502"), ("alarm.cleared", "smoke-401")]
    assert [k for k, _ in seen] == ["raised", "raised", "cleared"] and all(seq > 0 for _, seq in seen)
    assert ctx.uplink_kicks >= 1 and c.depth() == 0


async def test_a_failing_store_keeps_the_order_and_loses_nothing(rig):
    c, outbox, _ctx, clock = rig
    book = AlarmBook()
    outbox.fail_next = StoreError("disk I/O error")
    c.submit(pending(book, clock, "smoke-401"))
    c.submit(pending(book, clock, "smoke-502"))
    await asyncio.wait_for(c.flush(), 5)
    assert [d for _s, _k, d, _b in outbox.records("alarm.")] == ["smoke-401", "smoke-502"]
    assert c.counters["commit_failures"] == 1


async def test_repeats_are_coalesced_only_behind_a_deep_queue(rig, monkeypatch):
    c, outbox, _ctx, clock = rig
    monkeypatch.setattr(commit, "REPEATS_COALESCE_AT", 3)
    book = AlarmBook()
    first = pending(book, clock, "smoke-401")
    repeat = Pending(book.raise_(SMOKE, "smoke-401", clock.now(), 1.0, {}, sounds=True), {}, 0, False, {})
    gate = asyncio.Event()
    original = outbox.transact

    async def slow_transact(fn, durable=True):  # the store is stuck: the queue grows behind it
        await gate.wait()
        return await original(fn, durable)

    outbox.transact = slow_transact
    c.submit(first)
    await asyncio.sleep(0)  # the committer took `first` and waits on the store
    for _ in range(5):
        c.submit(repeat)
    assert c.depth() == 3 and c.counters["repeats_coalesced"] == 2
    c.submit(pending(book, clock, "smoke-401", "clear"))  # a clear is never coalesced
    assert c.depth() == 4
    gate.set()
    await asyncio.wait_for(c.flush(), 5)
    assert [k for _s, k, _d, _b in outbox.records("alarm.")] == ["alarm.raised", "alarm.cleared"]


async def test_submit_first_jumps_the_queue(rig):
    c, outbox, _ctx, clock = rig
    book = AlarmBook()
    gate = asyncio.Event()
    original = outbox.transact

    async def gated(fn, durable=True):
        await gate.wait()
        return await original(fn, durable)

    outbox.transact = gated
    c.submit(pending(book, clock, "smoke-401"))
    await asyncio.sleep(0)
    c.submit(pending(book, clock, "smoke-502"))
    c.submit_first(pending(book, clock, "smoke-b3"))
    gate.set()
    await asyncio.wait_for(c.flush(), 5)
    assert [d for _s, _k, d, _b in outbox.records("alarm.")] == ["smoke-401", "smoke-b3", "smoke-502"]


async def test_a_transition_that_cannot_be_written_is_rejected_alone(rig):
    c, outbox, _ctx, clock = rig
    book = AlarmBook()
    good = pending(book, clock, "smoke-401")
    t = book.raise_(SMOKE, "smoke-502", clock.now(), 0.0, {}, sounds=True)
    bad = Pending(t, {"alarm_id": t.alarm.id, "not_json": object()}, 0, False, {})  # a bug: unencodable body
    c.submit(good)
    c.submit(bad)
    await asyncio.wait_for(c.flush(), 5)
    assert [d for _s, _k, d, _b in outbox.records("alarm.")] == ["smoke-401"]
    assert c.counters["rejected"] == 1
