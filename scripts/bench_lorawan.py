"""Bench: LoRaWAN uplinks decoded per second through GWMP over real UDP on 127.0.0.1 (issue 19, target
>= 2,000/s), and datagram-sent -> Reading/Event-emitted latency, at full load and at a trickle.

Each uplink is one PUSH_DATA datagram with one rxpk (the worst case: lora_pkt_fwd batches several rxpk per
datagram under load), an ABP GS524N alarm frame from one of 100 devices: MIC check, FRMPayload decryption,
counter logic and the codec all run. At most --window datagrams are in flight, so none is dropped by the
socket buffer and the figure is the driver's throughput, not the kernel's.
Run: .venv/bin/python scripts/bench_lorawan.py [--uplinks 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec  # noqa: E402
import structlog  # noqa: E402

from drivers.base import DriverContext  # noqa: E402
from drivers.lorawan import gwmp  # noqa: E402
from drivers.lorawan.spec import SPEC_LORAWAN as SPEC  # noqa: E402
from drivers.lorawan.config import LorawanPort, LorawanProfile  # noqa: E402
from drivers.lorawan.simdevices import SimDevice  # noqa: E402
from gateway.clock import Clock  # noqa: E402
from gateway.model import Device, DeviceType, Reading  # noqa: E402
from tests.support.stats import pct  # noqa: E402

EUI = bytes.fromhex("0016c001ff10a235")
DEVICES = 100


def setup(port: int):
    nwk, app = os.urandom(16), os.urandom(16)
    devices = [Device(f"smoke-{i}", "gs524n", DeviceType.SMOKE, "lw", f"{0x26000000 + i:08x}") for i in range(DEVICES)]
    ctx = DriverContext("lw", msgspec.convert({"bind_port": port}, LorawanPort), tuple(devices),
                        {"gs524n": LorawanProfile(codec="milesight_gs524n")}, Clock("assume_synced"),
                        structlog.get_logger(), secrets={d.id: f"{nwk.hex()}:{app.hex()}" for d in devices})
    sims = [SimDevice.abp("smoke", 0x26000000 + i, nwk, app) for i in range(DEVICES)]
    return SPEC.build(ctx), sims


def frames(sims: list[SimDevice], n: int) -> list[bytes]:
    out = []
    for i in range(n):
        phy = sims[i % DEVICES].report("alarm")
        out.append(gwmp.push_data(i & 0xFFFF, EUI, [gwmp.rxpk_json(phy, i * 1000, 486.3, "SF7BW125")]))
    return out


async def run_once(n: int, window: int, trickle: int) -> tuple[float, float, list[float], list[float]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings only: no log cost per frame
    driver, sims = setup(port)
    sent_at: list[float] = []
    latencies: list[float] = []

    def emit(item) -> None:
        if isinstance(item, Reading):
            latencies.append(time.perf_counter() - sent_at[len(latencies)])

    task = asyncio.create_task(driver.run(emit))
    while driver._transport is None:
        await asyncio.sleep(0.01)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setblocking(False)
    data = frames(sims, n + trickle)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        while i - len(latencies) >= window:
            await asyncio.sleep(0)
        sent_at.append(time.perf_counter())
        tx.sendto(data[i], ("127.0.0.1", port))
        if i % 32 == 31:
            await asyncio.sleep(0)
    deadline = time.perf_counter() + 60
    while len(latencies) < n:
        if time.perf_counter() > deadline:
            raise SystemExit(f"stalled: {len(latencies)} of {n} emitted; driver counters {driver.counters}")
        await asyncio.sleep(0.001)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    loaded = latencies[:]
    for i in range(n, n + trickle):  # one at a time, 5 ms apart: latency of an isolated frame
        sent_at.append(time.perf_counter())
        tx.sendto(data[i], ("127.0.0.1", port))
        await asyncio.sleep(0.005)
    while len(latencies) < n + trickle:
        await asyncio.sleep(0.001)
    tx.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert driver.counters.get("reject_mic", 0) == 0 and driver.counters["uplinks"] == n + trickle
    return n / elapsed, cpu / n, loaded, latencies[n:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uplinks", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--window", type=int, default=64, help="datagrams in flight at most")
    ap.add_argument("--trickle", type=int, default=200, help="isolated frames for the idle latency")
    args = ap.parse_args()
    before = f"{os.getloadavg()[0]:.2f}"
    rates, cpus, loaded, idle = [], [], [], []
    for _ in range(args.runs):
        rate, cpu, lat_loaded, lat_idle = asyncio.run(run_once(args.uplinks, args.window, args.trickle))
        rates.append(rate)
        cpus.append(cpu)
        loaded += lat_loaded
        idle += lat_idle
        print(f"run: {rate:,.0f} uplinks/s, {cpu * 1e6:.0f} µs CPU per uplink (sender included)")
    print(f"load average before/after: {before} / {os.getloadavg()[0]:.2f}")
    print(f"uplinks decoded per second (median of {args.runs} runs of {args.uplinks:,}): {statistics.median(rates):,.0f} "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    cpu_us = statistics.median(cpus) * 1e6
    print(f"CPU per uplink (median, whole process incl. the sender): {cpu_us:.0f} µs = {1e6 / cpu_us:,.0f} uplinks/s per core")
    print(f"sent -> emitted at full load, window {args.window}: p50 {pct(loaded, 50) * 1000:.2f} ms, p99 {pct(loaded, 99) * 1000:.2f} ms")
    print(f"sent -> emitted, isolated frames: p50 {pct(idle, 50) * 1000:.3f} ms, p99 {pct(idle, 99) * 1000:.3f} ms, max {max(idle) * 1000:.3f} ms")


if __name__ == "__main__":
    main()
