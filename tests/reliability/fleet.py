"""R19 fleet reconnect: N uplink clients (own Outbox, own gateway id) in one process and one loop against
one mosquitto; SIGTERM + restart the broker and record when each client is connected again.

    .venv/bin/python -m tests.reliability.fleet --clients 100     # starts its own broker in a temp dir
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import msgspec

from gateway import log as logsetup
from gateway.clock import Clock
from gateway.config.schema import Credentials, Identity
from gateway.config.schema import Uplink as UplinkCfg
from gateway.uplink.client import Uplink
from tests.integration.uplink_support import open_outbox
from tests.support.broker import Broker
from tests.support.wait import async_wait_for

CAP_S = 2.0  # reconnect_cap_s as in R1 (reliability §8)
JITTER_S = 0.5  # Backoff.first_jitter() upper bound with reconnect_base_s = 1


class FleetResult(msgspec.Struct):
    clients: int
    reconnect_s: list[float]  # per client: broker port up -> that client connected again
    gave_up: int  # clients not connected again within the bound

    def buckets(self, width_s: float = 1.0) -> Counter[int]:
        return Counter(int(t // width_s) for t in self.reconnect_s)

    def worst_bucket_ratio(self) -> float:
        """Largest 1-s bucket / mean bucket over the window [0, ceil(slowest reconnect)) s."""
        if not self.reconnect_s:
            return math.inf
        window = max(1, math.ceil(max(self.reconnect_s)))
        return max(self.buckets().values()) / (len(self.reconnect_s) / window)

    def histogram(self, width_s: float = 0.25) -> str:
        b = self.buckets(width_s)
        rows = [f"  {k * width_s:5.2f}-{(k + 1) * width_s:5.2f} s {b[k]:4d} {'#' * b[k]}" for k in range(max(b, default=-1) + 1)]
        return "\n".join(rows)


async def run_fleet(broker: Broker, n: int, workdir: Path, bound_s: float = CAP_S + JITTER_S + 5) -> FleetResult:
    clock = Clock("assume_synced")
    cfg = UplinkCfg(broker_url=broker.url, reconnect_cap_s=CAP_S)
    log = logsetup.get()
    outboxes, uplinks = [], []
    for i in range(n):
        d = workdir / f"gw-{i:03d}"
        d.mkdir(parents=True, exist_ok=True)
        ob = await open_outbox(d, clock)
        outboxes.append(ob)
        uplinks.append(Uplink(cfg, Credentials(), Identity(gateway_id=f"fleet-{i:03d}"), ob, clock, log))
    tasks = [asyncio.create_task(u.run()) for u in uplinks]
    try:
        await async_wait_for(lambda: all(u.state == "connected" for u in uplinks), timeout_s=30 + n * 0.2, what="fleet connected")
        before = [u.connects for u in uplinks]
        await asyncio.to_thread(broker.stop, signal.SIGTERM)
        await asyncio.to_thread(broker.start)
        up_at = time.monotonic()
        back: dict[int, float] = {}
        while len(back) < n and time.monotonic() - up_at < bound_s:  # bounded: the assertion's own bound
            now = time.monotonic()
            for i, u in enumerate(uplinks):
                if i not in back and u.connects > before[i] and u.state == "connected":
                    back[i] = now - up_at
            await asyncio.sleep(0.01)
        return FleetResult(n, sorted(back.values()), n - len(back))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ob in outboxes:
            await ob.close()


def report(r: FleetResult) -> str:
    spread = f"max {max(r.reconnect_s):.2f} s, median {r.reconnect_s[len(r.reconnect_s) // 2]:.2f} s" if r.reconnect_s else "none"
    return (f"R19: clients={r.clients} reconnected={len(r.reconnect_s)} gave_up={r.gave_up} {spread}; "
            f"worst 1-s bucket / mean = {r.worst_bucket_ratio():.2f}\n{r.histogram()}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp:
        broker = Broker(Path(tmp) / "broker").start()
        try:
            print(report(asyncio.run(run_fleet(broker, args.clients, Path(tmp)))))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
