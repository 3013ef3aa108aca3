"""The supervisor restarts a crashing stage with capped, jittered exponential backoff, isolates it from
its siblings, and stops everything on cancellation."""

import asyncio
import random

import pytest

from gateway import log as logsetup
from gateway.clock import Clock
from gateway.supervise import Backoff, Supervisor


def test_backoff_grows_exponentially_with_jitter_and_caps():
    b = Backoff(base_s=1.0, cap_s=8.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for d, c in zip(delays, ceilings):
        assert c / 2 <= d <= c
    assert len(set(delays)) == len(delays)  # jittered, not deterministic doubling
    b.reset()
    assert b.ceiling() == 1.0


async def test_crashing_stage_is_restarted_with_backoff_and_siblings_keep_running():
    logsetup.setup("critical")
    sup = Supervisor(logsetup.get(), Clock("assume_synced"), base_s=0.02, cap_s=0.08, healthy_after_s=60)
    starts: list[float] = []
    ticks = 0
    loop = asyncio.get_running_loop()

    async def crasher():
        starts.append(loop.time())
        raise RuntimeError("port exploded")

    async def steady():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    sup.start("driver:bad", crasher)
    sup.start("driver:good", steady)
    while len(starts) < 6:
        await asyncio.sleep(0.01)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # Backoff ceiling doubles 0.02 -> 0.04 -> 0.08 and stays capped: later gaps are never below half the cap.
    assert all(g >= 0.01 for g in gaps)
    assert max(gaps[3:]) <= 0.08 + 0.05
    assert sup.items["driver:bad"].restarts >= 5
    assert "port exploded" in sup.items["driver:bad"].last_error
    assert ticks > 10 and sup.snapshot()["driver:good"]["running"]
    await sup.stop()
    assert all(i.task.done() for i in sup.items.values())


async def test_stop_cancels_in_reverse_start_order_and_runs_cleanup():
    logsetup.setup("critical")
    sup = Supervisor(logsetup.get(), Clock("assume_synced"))
    order: list[str] = []

    def stage(name):
        async def body():
            try:
                await asyncio.sleep(3600)
            finally:
                order.append(name)
        return body

    for name in ("store", "uplink", "driver"):
        sup.start(name, stage(name))
    await asyncio.sleep(0)
    await sup.stop()
    assert order == ["driver", "uplink", "store"]


@pytest.mark.parametrize("healthy_after_s, expect_reset", [(0.0, True), (60.0, False)])
async def test_backoff_resets_after_a_healthy_run(healthy_after_s, expect_reset):
    logsetup.setup("critical")
    sup = Supervisor(logsetup.get(), Clock("assume_synced"), base_s=0.01, cap_s=0.04, healthy_after_s=healthy_after_s)
    runs = 0

    async def flaky():
        nonlocal runs
        runs += 1
        raise RuntimeError("boom")

    item = sup.start("x", flaky)
    while runs < 4:
        await asyncio.sleep(0.005)
    await sup.stop()
    assert (item.backoff.tries == 1) is expect_reset
