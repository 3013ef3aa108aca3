#!/usr/bin/env python3
"""Modbus benchmarks (docs/BENCHMARKS.md "## Modbus"). The simulator runs in its own process so
the CPU figures are the driver's alone.

(a) RTU bus efficiency: 10 slaves, simulator emulating 9600 8N1 wire time, bus saturated
    (poll period far below the cycle). efficiency = computed frame wire time / measured cycle time.
(b) Modbus TCP at 200 polls/s: 20 units, 100 ms poll period: CPU % and RSS of the driver process.

Usage: .venv/bin/python scripts/bench_modbus.py [--seconds 20] [--turnaround-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.base import DriverContext  # noqa: E402
from drivers.modbus.spec import SPEC_RTU, SPEC_TCP  # noqa: E402
from drivers.modbus.config import RtuPort, TcpPort  # noqa: E402
from drivers.modbus.simbank import load_profile  # noqa: E402
from gateway.clock import Clock  # noqa: E402
from gateway.model import Device, DeviceType, Reading  # noqa: E402

PROFILE = ROOT / "config" / "profiles" / "hydrant_monitor.toml"
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))


def simulator(args: list[str]) -> subprocess.Popen:
    code = "from drivers.modbus.simulator import cli; cli()"
    return subprocess.Popen([sys.executable, "-c", code, "--profile", "hydrant_monitor",
                             "--profiles-dir", str(PROFILE.parent), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_driver(spec, port_cfg, units: int, seconds: float) -> tuple[int, float, float, float]:
    _, prof = load_profile(PROFILE)
    devices = tuple(Device(f"h{u}", "h", DeviceType.HYDRANT, "bus", u) for u in range(1, units + 1))
    driver = spec.build(DriverContext("bus", port_cfg, devices, {"h": prof}, Clock("assume_synced"), structlog.get_logger()))
    polls = 0

    def emit(item) -> None:
        nonlocal polls
        polls += isinstance(item, Reading)

    task = asyncio.create_task(driver.run(emit))
    await asyncio.sleep(2.0)  # warm-up: port open, first cycle
    p0, c0, t0 = polls, cpu_s(), time.monotonic()
    await asyncio.sleep(seconds)
    p1, c1, t1 = polls, cpu_s(), time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return p1 - p0, c1 - c0, t1 - t0, rss_mib()


def bench_rtu(seconds: float, turnaround_ms: float) -> None:
    link = os.path.join(tempfile.mkdtemp(), "ttyMB")
    units = 10
    sim = simulator(["--pty", link, "--baud", "9600", "--turnaround-ms", str(turnaround_ms),
                     *sum((["--slave", str(u)] for u in range(1, units + 1)), [])])
    try:
        sim.stdout.readline()  # "modbus simulator: ... on LINK"
        cfg = msgspec.convert({"path": link, "baud": 9600, "poll_period_s": 0.05, "timeout_s": 0.5}, RtuPort)
        polls, cpu, wall, _ = asyncio.run(run_driver(SPEC_RTU, cfg, units, seconds))
    finally:
        sim.terminate()
        sim.wait(5)
    char_s = 10 / 9600  # 8N1
    # hydrant_monitor: one FC03 of 5 registers: request 8 bytes, reply 5 + 2*5 = 15 bytes
    wire_s = (8 + 15) * char_s
    cycle_s = wall / (polls / units)
    print(f"(a) RTU 9600 8N1, {units} slaves, slave turnaround {turnaround_ms:g} ms, {wall:.1f} s:")
    print(f"    polls {polls} ({polls / wall:.1f}/s), cycle {cycle_s * 1000:.1f} ms, wire time/cycle "
          f"{wire_s * units * 1000:.1f} ms, efficiency {wire_s * units / cycle_s:.2f}, "
          f"efficiency excl. slave turnaround {wire_s * units / (cycle_s - units * turnaround_ms / 1000):.2f}")
    print(f"    driver CPU {cpu / polls * 1e6:.0f} µs per poll ({100 * cpu / wall:.1f} % of one core)")


def bench_tcp(seconds: float) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    units = 20
    sim = simulator(["--tcp", f"127.0.0.1:{port}", *sum((["--slave", str(u)] for u in range(1, units + 1)), [])])
    try:
        sim.stdout.readline()
        cfg = msgspec.convert({"host": "127.0.0.1", "port": port, "poll_period_s": 0.1, "timeout_s": 1.0}, TcpPort)
        polls, cpu, wall, rss = asyncio.run(run_driver(SPEC_TCP, cfg, units, seconds))
    finally:
        sim.terminate()
        sim.wait(5)
    print(f"(b) TCP {units} units x 100 ms, {wall:.1f} s: {polls / wall:.1f} polls/s (target 200), "
          f"driver CPU {100 * cpu / wall:.1f} % of one core, {cpu / polls * 1e6:.0f} µs per poll, RSS {rss:.1f} MiB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--turnaround-ms", type=float, default=0.0)
    a = ap.parse_args()
    bench_rtu(a.seconds, a.turnaround_ms)
    bench_tcp(a.seconds)
