"""Uplink fault rows R2 (half-open link), R3 (clean broker restart) and R4 (broker SIGKILL) at the uplink
level: real Outbox + Uplink + mosquitto, 200 readings/s, §6 seq check at a platform subscriber that talks
straight to the broker. CI: 2 blackholes, 2 restarts, 1 kill (R2_BLACKHOLES, R3_RESTARTS, R4_KILLS for soak).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from gateway.simulate.proxy import Mode
from tests.reliability.test_daemon_kill import committed, payload_conflicts
from tests.reliability.uplink_rig import UplinkRig, platform_view, seen
from tests.support.wait import async_wait_for

K = 5  # the schema's minimum keepalive_s (reliability §7 R2)
BLACKHOLES = int(os.environ.get("R2_BLACKHOLES", "2"))
RESTARTS = int(os.environ.get("R3_RESTARTS", "2"))
KILLS = int(os.environ.get("R4_KILLS", "1"))


async def _everything_delivered(views, rig, last: int, timeout_s: float = 30.0) -> None:
    await async_wait_for(lambda: set(range(1, last + 1)) <= seen(views, rig.outbox.store_id), timeout_s=timeout_s,
                         interval_s=0.05, what=f"seqs 1..{last} at the platform")


@pytest.mark.slow  # over 5 s (issue 16)
def test_r2_blackhole_detected_within_2k_plus_1_and_ingest_never_blocks(broker, tmp_path):
    """Behaviour, not throughput (issue 16: performance belongs in benchmarks): while the link is a
    blackhole the producer keeps going, every reading offered is committed, none dropped, and the loop
    is never held for anything like the keepalive by the dead socket."""
    view = platform_view(broker.url)

    async def main():
        async with UplinkRig(tmp_path, broker.port, proxy=True, keepalive_s=K) as rig:
            detect_s, offered, committed_during, gaps = [], [], [], []
            for _ in range(BLACKHOLES):
                await rig.outbox.flush()
                seq0, n0, t0 = rig.outbox.stats().last_seq, rig.producer.count, time.monotonic()
                rig.producer.reset_gap()
                rig.proxy.set_mode(Mode.BLACKHOLE)
                await async_wait_for(lambda: rig.up.state != "connected", timeout_s=3 * K + 5, what="dead link detected")
                detect_s.append(time.monotonic() - t0)
                n1 = rig.producer.count
                await rig.outbox.flush()
                offered.append(n1 - n0)
                committed_during.append(rig.outbox.stats().last_seq - seq0)
                gaps.append(rig.producer.max_gap_s)
                rig.proxy.set_mode(Mode.PASS)
                await rig.connected(timeout_s=20)  # a connect caught in the blackhole times out after 10 s
            last = await rig.stop_producing()
            await rig.drained()
            await _everything_delivered([view], rig, last)
            return detect_s, offered, committed_during, gaps, rig.producer.max_call_s, last, rig.outbox.stats()

    try:
        detect_s, offered, committed_during, gaps, max_call_s, last, stats = asyncio.run(main())
        lost = set(range(1, last + 1)) - seen([view], stats.store_id)
        print(f"\nR2: blackholes={BLACKHOLES} K={K} s detect_s={[round(d, 2) for d in detect_s]} "
              f"offered={offered} committed={committed_during} longest_loop_gap_s={[round(g, 3) for g in gaps]} "
              f"max put_reading={max_call_s * 1e3:.2f} ms committed={last} lost={len(lost)} keyed_duplicates={view.ledger.duplicates}")
        assert all(d <= 2 * K + 1 for d in detect_s)
        # ingest went on through the hole: readings offered, every one of them committed, none dropped
        assert all(n > 0 for n in offered) and all(c >= n for c, n in zip(committed_during, offered))
        assert stats.dropped == 0
        # a loop held by the dead socket would stall for seconds (the keepalive, a connect timeout)
        assert all(g < K / 2 for g in gaps), gaps
        assert lost == set() and payload_conflicts(view) == 0
    finally:
        view.stop()


@pytest.mark.slow  # over 5 s (issue 16)
def test_r3_clean_broker_restart_with_platform_offline_loses_nothing_and_resumes_within_2s(broker, tmp_path):
    views = [platform_view(broker.url)]

    async def main():
        async with UplinkRig(tmp_path, broker.port) as rig:
            await async_wait_for(views[0].client.is_connected, what="platform connected")
            resumed, first_ack = [], []
            for _ in range(RESTARTS):
                views[-1].stop()  # the platform is offline across the restart: its session holds our messages
                await asyncio.sleep(0.5)  # readings committed and published while it is away
                connects = rig.up.connects
                await asyncio.to_thread(broker.stop, signal.SIGTERM)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(broker.start)
                up_at = time.monotonic()
                await async_wait_for(lambda c=connects: rig.up.connects > c and rig.up.state == "connected", timeout_s=15,
                                     what="uplink back")
                resumed.append(time.monotonic() - up_at)  # polled every 10 ms
                await async_wait_for(lambda t=up_at: (rig.up.drainer.last_puback_mono or 0) > t, timeout_s=15, what="first PUBACK")
                first_ack.append(rig.up.drainer.last_puback_mono - up_at)
                await asyncio.sleep(0.5)
                views.append(platform_view(broker.url))  # same client id: resumes the persistent session
            last = await rig.stop_producing()
            await rig.drained()
            await _everything_delivered(views, rig, last)
            return resumed, first_ack, last, rig.outbox.store_id

    try:
        resumed, first_ack, last, store_id = asyncio.run(main())
        lost = set(range(1, last + 1)) - seen(views, store_id)
        print(f"\nR3: restarts={RESTARTS} resumed_after_broker_up_s={[round(r, 2) for r in resumed]} "
              f"first_puback_s={[round(a, 2) for a in first_ack]} committed={last} lost={len(lost)} "
              f"keyed_duplicates={sum(v.ledger.duplicates for v in views)}")
        assert lost == set()
        assert all(r <= 2.0 for r in resumed)
        assert all(payload_conflicts(v) == 0 for v in views)
    finally:
        views[-1].stop()


def test_r4_broker_sigkill_gateway_deletes_only_pubacked_rows_and_broker_loss_is_reported(broker, tmp_path, monkeypatch):
    from gateway.uplink.drain import Drainer

    view = platform_view(broker.url)
    acked_ok: set[int] = set()
    original = Drainer.on_publish

    def spy(self, mid: int, rc: int) -> None:  # record which seqs a PUBACK < 0x80 covered, then go on as normal
        msg = self.inflight.get(mid)
        if msg is not None and rc < 0x80:
            acked_ok.update(msg.seqs)
        original(self, mid, rc)

    # Installed before the uplink exists, so the very first PUBACK is audited too.
    monkeypatch.setattr(Drainer, "on_publish", spy)

    async def main():
        async with UplinkRig(tmp_path, broker.port) as rig:
            for _ in range(KILLS):
                await asyncio.sleep(1.0)
                connects = rig.up.connects
                await asyncio.to_thread(broker.stop, signal.SIGKILL)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(broker.start)
                await async_wait_for(lambda c=connects: rig.up.connects > c and rig.up.state == "connected", timeout_s=15,
                                     what="uplink back")
            await asyncio.sleep(0.5)
            last = await rig.stop_producing()
            await rig.drained()
            await rig.outbox.flush()
            _store, remaining = committed(tmp_path / "state" / "outbox.db")  # rows still in the store
            await async_wait_for(lambda: last in seen([view], rig.outbox.store_id), timeout_s=30, what="last seq at the platform")
            return last, remaining, rig.outbox.store_id, rig.up.health()

    try:
        last, remaining, store_id, health = asyncio.run(main())
        deleted = set(range(1, last + 1)) - remaining
        broker_lost = set(range(1, last + 1)) - seen([view], store_id)
        print(f"\nR4: kills={KILLS} committed={last} deleted_without_puback={len(deleted - acked_ok)} "
              f"puback_failures={health['puback_failures']} broker_side_lost={len(broker_lost)} (not ours: P3 'not promised')")
        assert deleted - acked_ok == set()
        assert health["records_acked"] >= len(deleted)
    finally:
        view.stop()
