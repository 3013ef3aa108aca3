"""The rig for uplink fault rows (R2-R4): a real Outbox + Uplink in the test's loop, optionally behind a
FaultProxy, a paced reading producer (200/s, like the simulated courtyard), and the §6 seq check
against a PlatformView connected straight to the broker."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any, Self

from gateway.clock import Clock
from gateway.simulate.platform import PlatformView
from gateway.simulate.proxy import FaultProxy
from tests.integration.uplink_support import GW, make_uplink, open_outbox, reading
from tests.support.wait import async_wait_for

RATE_PER_S = 200


class Producer:
    """put_reading at RATE_PER_S on a catch-up schedule; counts readings, the slowest call and the
    longest gap between two calls (a loop held by the uplink shows up as a gap of seconds)."""

    def __init__(self, outbox: Any, clock: Clock) -> None:
        self.outbox, self.clock = outbox, clock
        self.count = 0
        self.max_call_s = 0.0
        self.max_gap_s = 0.0
        self.task: asyncio.Task[None] | None = None

    def reset_gap(self) -> None:
        self.max_gap_s = 0.0

    async def run(self) -> None:
        start = last = time.monotonic()
        while True:
            due = start + self.count / RATE_PER_S
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            t0 = time.perf_counter()
            self.outbox.put_reading(reading(self.clock, f"hydrant-{self.count % 3}", self.count))
            self.max_call_s = max(self.max_call_s, time.perf_counter() - t0)
            now = time.monotonic()
            self.max_gap_s, last = max(self.max_gap_s, now - last), now
            self.count += 1


class UplinkRig:
    """`async with UplinkRig(tmp_path, broker_port, proxy=True, **uplink_cfg)`: outbox, (proxy), uplink, producer."""

    def __init__(self, tmp_path: Any, broker_port: int, proxy: bool = False, **cfg: Any) -> None:
        self.tmp_path, self.broker_port, self.use_proxy, self.cfg = tmp_path, broker_port, proxy, cfg
        self.proxy: FaultProxy | None = None

    async def __aenter__(self) -> Self:
        self.clock = Clock("assume_synced")
        self.outbox = await open_outbox(self.tmp_path, self.clock)
        port = self.broker_port
        if self.use_proxy:
            self.proxy = FaultProxy("127.0.0.1", self.broker_port)
            port = await self.proxy.start()
        self.up = make_uplink(f"mqtt://127.0.0.1:{port}", self.outbox, self.clock, **self.cfg)
        self.task = asyncio.create_task(self.up.run())
        self.producer = Producer(self.outbox, self.clock)
        self.producer.task = asyncio.create_task(self.producer.run())
        await self.connected()
        return self

    async def connected(self, timeout_s: float = 15.0) -> None:
        await async_wait_for(lambda: self.up.state == "connected", timeout_s=timeout_s, what="uplink connected")

    async def stop_producing(self) -> int:
        """Stop the producer, commit what it queued, and return the last committed seq."""
        assert self.producer.task is not None
        self.producer.task.cancel()
        await asyncio.gather(self.producer.task, return_exceptions=True)
        await self.outbox.flush()
        return self.outbox.stats().last_seq

    async def drained(self, timeout_s: float = 30.0) -> None:
        await async_wait_for(lambda: sum(self.outbox.stats().depth.values()) == 0, timeout_s=timeout_s, what="outbox drained")

    async def __aexit__(self, *exc: object) -> None:
        for t in (self.producer.task, self.task):
            if t is not None:
                t.cancel()
        await asyncio.gather(*(t for t in (self.producer.task, self.task) if t is not None), return_exceptions=True)
        if self.proxy is not None:
            await self.proxy.stop()
        await self.outbox.close()


def platform_view(broker_url: str, gateway_id: str = GW) -> PlatformView:
    """A persistent platform subscriber (clean_start False, session expiry 1 h), quiet, already connecting."""
    view = PlatformView(broker_url, gateway_id, out=io.StringIO())
    view.start()
    return view


def seen(views: list[PlatformView], store_id: str, gateway_id: str = GW) -> set[int]:
    """The seqs of (gateway_id, store_id) delivered to any of the views (one platform session, several clients)."""
    out: set[int] = set()
    for v in views:
        with v.lock:
            out |= v.ledger.seen.get((gateway_id, store_id), set())
    return out
