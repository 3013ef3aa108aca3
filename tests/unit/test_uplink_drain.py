"""The publishing loop: PUBACK (< 0x80) is the only way out of the outbox; alarms before telemetry; bounded window."""

import asyncio
import json
import random

import msgspec

from gateway import log as logsetup
from gateway.clock import ManualClock
from gateway.config.schema import Uplink as UplinkCfg
from gateway.errors import StoreError
from gateway.model import RecordClass
from gateway.uplink.drain import Drainer, TokenBucket, passed
from gateway.uplink.wire import Envelope
from tests.support.wait import async_wait_for
from tests.unit.uplink_fakes import FakeOutbox, reading_record


class FakeSession:
    """Records PUBLISHes (v2 stream tables apart, in `tables`); the test decides when PUBACKs arrive."""

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[tuple[int, str, bytes]] = []
        self.tables: list[tuple[int, bytes, bool]] = []
        self._mid = 0

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        self._mid += 1
        if topic.endswith("/table"):
            self.tables.append((self._mid, payload, retain))
        else:
            self.sent.append((self._mid, topic, payload))
        return self._mid


def _setup(**cfg):
    logsetup.setup("critical")
    clock = ManualClock()
    outbox = FakeOutbox()
    conf = msgspec.structs.replace(UplinkCfg(broker_url="mqtt://127.0.0.1:1"), **cfg)
    d = Drainer(conf, outbox, Envelope("gw-001", outbox.store_id), clock, logsetup.get())
    outbox.on_commit(d.on_commit)
    return clock, outbox, d, FakeSession()


def _reading(outbox, clock, i):
    return outbox.add(RecordClass.TELEMETRY, "reading", "hydrant-1", clock.now(), {"values": {"p": i}})


async def _run_until(d, session, cond, what):
    task = asyncio.create_task(d.run(session))
    try:
        await async_wait_for(cond, timeout_s=10, what=what)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_rows_leave_the_outbox_only_on_a_successful_puback():
    async def main():
        clock, outbox, d, s = _setup()
        seq = outbox.add(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {})
        await _run_until(d, s, lambda: s.sent, "alarm published")
        assert seq in outbox.rows  # published, not yet acknowledged
        d.on_publish(s.sent[0][0], 0)
        await async_wait_for(lambda: seq not in outbox.rows, what="ack")
        assert outbox.acked == [seq] and d.last_puback_wall == clock.wall()
    asyncio.run(main())


def test_puback_not_authorized_keeps_rows_raises_fault_and_backs_off():
    async def main():
        clock, outbox, d, s = _setup()
        refused = []
        d.on_refused = refused.append
        seq = outbox.add(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {})
        await _run_until(d, s, lambda: s.sent, "alarm published")
        d.on_publish(s.sent[0][0], 135)
        assert seq in outbox.rows and outbox.acked == []
        assert d.fault == "puback_135" and refused == [135] and d.counters.puback_failures == 1
        assert d.paused_until - clock.monotonic() >= d.cfg.reconnect_cap_s / 2  # ACL: straight to the cap
        assert d._blocked_s() > 0  # nothing is published during the pause
    asyncio.run(main())


def test_no_telemetry_publish_while_an_alarm_waits_and_fifo_within_class():
    async def main():
        clock, outbox, d, s = _setup(batch_max_readings=10, max_inflight=100)
        for i in range(30):
            _reading(outbox, clock, i)
        ev = outbox.add(RecordClass.EVENT, "event.tamper", "manhole-1", clock.now(), {})
        alarm = outbox.add(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {})
        # The drain bucket starts empty each session: let the manual clock earn the tokens.
        await _run_until(d, s, lambda: clock.advance(0.01) or len(s.sent) >= 5, "everything published")
        topics = [t.rsplit("/", 1)[1] for _mid, t, _p in s.sent]
        assert topics == ["alarm", "event", "telemetry", "telemetry", "telemetry"]
        assert json.loads(s.sent[0][2])["seq"] == alarm and json.loads(s.sent[1][2])["seq"] == ev
        seq0s = [json.loads(p)["seq0"] for _m, _t, p in s.sent[2:]]
        assert seq0s == sorted(seq0s) == [1, 11, 21]
    asyncio.run(main())


def test_in_flight_window_is_never_exceeded():
    async def main():
        clock, outbox, d, s = _setup(max_inflight=3)
        for _ in range(10):
            outbox.add(RecordClass.EVENT, "event.heartbeat", "d-1", clock.now(), {})
        task = asyncio.create_task(d.run(s))
        await async_wait_for(lambda: len(s.sent) == 3, what="window filled")
        await asyncio.sleep(0.05)
        assert len(s.sent) == 3 and len(d.inflight) == 3
        d.on_publish(s.sent[0][0], 0)
        await async_wait_for(lambda: len(s.sent) == 4, what="one more after a PUBACK")
        assert len(d.inflight) == 3
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    asyncio.run(main())


def test_lost_session_forgets_mids_and_refetches_unacked_rows():
    async def main():
        clock, outbox, d, s = _setup()
        seq = outbox.add(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {})
        await _run_until(d, s, lambda: s.sent, "alarm published")
        d.session_lost()
        s2 = FakeSession()
        await _run_until(d, s2, lambda: s2.sent, "alarm re-published")
        assert s2.sent[0][2] == s.sent[0][2] and json.loads(s2.sent[0][2])["seq"] == seq  # identical bytes
    asyncio.run(main())


def test_unsynced_stamp_is_rebased_before_sending_once_the_clock_syncs():
    async def main():
        clock, outbox, d, s = _setup()
        clock._synced = False
        clock._wall = 946_684_800.0  # 2000-01-01: fake-hwclock after a power cut
        outbox.add(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {})
        clock.advance(10)
        clock.step_wall(1_790_000_000.0 - clock.wall(), synced=True)  # NTP step
        await _run_until(d, s, lambda: s.sent, "alarm published")
        doc = json.loads(s.sent[0][2])
        assert doc["clock_synced"] is True and doc["ts_ms"] == round((1_790_000_000.0 - 10) * 1000)
    asyncio.run(main())


def test_token_bucket_starts_empty_and_is_never_overdrawn():
    """Issue 21: the configured rate holds from the first second after a broker return."""
    clock = ManualClock()
    b = TokenBucket(1000.0, 100, clock)
    assert 0.099 <= b.wait_s(100) <= 0.102  # empty: the first full batch is earned at the rate
    clock.advance(0.05)
    assert b.wait_s(10) == 0 and 0.049 <= b.wait_s(100) <= 0.052
    clock.advance(10.0)
    assert b.wait_s(500) == 0 and b.tokens == 100  # capped at capacity, and `want` clamps to it
    sent, t = 0, 0.0
    b.reset()
    while t < 1.0:  # a greedy drain for one second: never more than rate x elapsed
        wait = b.wait_s(100)
        if wait:
            clock.advance(wait)
            t += wait
            continue
        b.spend(100)
        sent += 100
        assert sent <= 1000.0 * t + 1e-6
    assert 900 <= sent <= 1000


def test_missing_puback_ends_the_session_so_a_half_open_link_is_dropped():
    async def main():
        clock, outbox, d, s = _setup()
        seq = outbox.add(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {})
        task = asyncio.create_task(d.run(s))
        await async_wait_for(lambda: s.sent, what="alarm published")
        assert not task.done()
        clock.advance(16.0)  # no PUBACK for longer than PUBACK_TIMEOUT_S
        d.wake.set()
        await asyncio.wait_for(task, 5)  # run() returns: the uplink drops the session and reconnects
        assert d.counters.puback_timeouts == 1 and seq in outbox.rows
    asyncio.run(main())


def test_a_refused_table_publish_is_counted_and_never_holds_or_fails_records():
    """Telemetry v2 on a broker whose ACL predates cg/v1/<gw>/table: the batch (table inline) still goes."""
    async def main():
        clock, outbox, d, s = _setup()
        for i in range(5):
            _reading(outbox, clock, i)
        await _run_until(d, s, lambda: clock.advance(0.01) or (s.sent and s.tables), "table and batch published")
        table_mid, _payload, retain = s.tables[0]
        assert retain and "tab" in json.loads(s.sent[0][2])
        d.on_publish(table_mid, 135)
        d.on_publish(s.sent[0][0], 0)
        await async_wait_for(lambda: not outbox.rows, what="batch acknowledged")
        assert d.counters.tables_refused == 1 and d.fault == "" and d.counters.puback_failures == 0
    asyncio.run(main())


def _checked_fetch(outbox, violations, afters):
    """Wrap the fake outbox's fetch to check the cursor's invariant on every call: each reading still owed
    at or below `after` is one the drain holds (in flight or being acked)."""
    orig = outbox.fetch

    def fetch(consumer, limit, exclude=(), classes=None, after=0):
        held = set(exclude)
        owed = [q for q, r in outbox.rows.items() if r.cls == RecordClass.TELEMETRY and q <= after and q not in held]
        if owed:
            violations.append((after, owed[:5]))
        afters.append(after)
        return orig(consumer, limit, exclude, classes, after)

    outbox.fetch = fetch


def _backlog(n: int, batch: int, window: int):
    """A drainer over n readings, uncapped, no linger, its fetches checked by _checked_fetch."""
    clock, outbox, d, s = _setup(batch_max_readings=batch, max_inflight=window, drain_readings_per_s=1e9, batch_linger_ms=0)
    for i in range(n):
        _reading(outbox, clock, i)
    violations: list = []
    afters: list[int] = []
    _checked_fetch(outbox, violations, afters)
    return clock, outbox, d, s, violations, afters


async def _chaos(seed: int) -> tuple[list, list, dict[str, int]]:
    rng = random.Random(seed)
    clock, outbox, d, s, violations, afters = _backlog(1500, batch=25, window=5)
    ack = outbox.ack
    fail_acks = [0]

    async def flaky_ack(consumer, seqs):
        if fail_acks[0]:
            fail_acks[0] -= 1
            raise StoreError("injected: the ack's transaction failed")
        await ack(consumer, seqs)

    outbox.ack = flaky_ack
    task = asyncio.create_task(d.run(s))
    faults = {"drops": 0, "refused": 0, "failed_acks": 0}
    try:
        for _ in range(100_000):
            if not outbox.rows:
                break
            await asyncio.sleep(0)
            clock.advance(0.01)
            if rng.random() < 0.01:  # an alarm meanwhile: it goes first and never moves the cursor
                outbox.add(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {})
            if not d.inflight:
                d.wake.set()
                continue
            mid = rng.choice(list(d.inflight))
            x = rng.random()
            if x < 0.02:  # the connection drops with its window in flight
                faults["drops"] += 1
                s.connected = False
                d.wake.set()
                await asyncio.wait_for(task, 5)
                d.session_lost()
                s = FakeSession()
                task = asyncio.create_task(d.run(s))
            elif x < 0.05:  # PUBACK >= 0x80: not delivered, publishing pauses
                faults["refused"] += 1
                d.on_publish(mid, 0x80)
                clock.advance(max(0.0, d.paused_until - clock.monotonic()) + 0.01)
            else:
                if rng.random() < 0.03:
                    faults["failed_acks"] += 1
                    fail_acks[0] = 1
                d.on_publish(mid, 0)
        assert not outbox.rows, f"seed {seed}: {len(outbox.rows)} rows never acknowledged"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return violations, afters, faults


def test_the_cursor_only_ever_passes_readings_the_drain_holds():
    """Checked on every fetch while a broker stand-in PUBACKs in any order, refuses, fails the store's ack and
    drops sessions at random: no reading the outbox still owes lies at or below the cursor unless it is in
    flight or being acked, and everything is delivered."""
    seen = {"drops": 0, "refused": 0, "failed_acks": 0}
    for seed in range(8):
        violations, afters, faults = asyncio.run(_chaos(seed))
        assert violations == [], f"seed {seed}"
        assert sum(1 for a in afters if a) > len(afters) // 2  # the cursor did the stepping, not the floor
        seen = {k: n + faults[k] for k, n in seen.items()}
    assert all(seen.values()), seen  # every kind of fault happened, more than once in all


def test_the_cursor_goes_back_to_the_floor_after_any_unfinished_ack_for_another_store_and_when_idle():
    async def main():
        clock, outbox, d, s, violations, afters = _backlog(100, batch=10, window=2)
        ack = outbox.ack
        broken = [True]

        async def buggy_ack(consumer, seqs):  # not a StoreError: our own bug, or a cancellation
            if broken.pop() if broken else False:
                raise RuntimeError("injected")
            await ack(consumer, seqs)

        outbox.ack = buggy_ack
        task = asyncio.create_task(d.run(s))
        try:
            # The drain bucket starts empty each session: let the manual clock earn the tokens.
            await async_wait_for(lambda: clock.advance(0.001) or (len(s.sent) == 2 and d.cursor == 20), what="window full, cursor at 20")
            d.on_publish(s.sent[0][0], 0)  # its ack raises: 1-10 owed again and no longer held
            await async_wait_for(lambda: clock.advance(0.001) or (len(s.sent) == 3 and not d.acking and d.cursor == 0),
                                 what="the ack given up, the cursor back at the floor")
            n = len(afters)
            d.on_publish(s.sent[1][0], 0)
            await async_wait_for(lambda: clock.advance(0.001) or len(s.sent) == 4, what="the next batch")
            assert afters[n] == 0 and json.loads(s.sent[3][2])["seq0"] == 1  # 1-10 again, found from the floor
            outbox.store_id = "another-store"
            n = len(afters)
            d.on_publish(s.sent[2][0], 0)
            await async_wait_for(lambda: clock.advance(0.001) or len(s.sent) == 5, what="the batch after")
            assert afters[n] == 0  # another store's seqs start anew

            def ack_all() -> bool:
                clock.advance(0.001)
                for mid in list(d.inflight):
                    d.on_publish(mid, 0)
                return not outbox.rows and not d.inflight and not d.acking and d.cursor == 0

            await async_wait_for(ack_all, what="everything acknowledged, the drain idle, its cursor back at the floor")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert violations == []
    asyncio.run(main())


def test_the_cursor_stops_below_a_reading_a_batch_left_out():
    recs = [reading_record(q, "h", ManualClock().now(), {"p": 1}) for q in (5, 6, 7, 9)]
    assert passed(recs, (5, 6, 7, 9)) == 9
    assert passed(recs, (5, 6)) == 6  # a prefix: 7 and 9 stay above the cursor
    assert passed(recs, (5, 7, 9)) == 5  # 6 left out: the cursor stops under it
