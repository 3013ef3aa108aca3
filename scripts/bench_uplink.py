#!/usr/bin/env python3
"""Uplink drain benchmark: a backlog of N readings in the real outbox, drained to a local mosquitto.

Reports readings/s (backlog fully PUBACKed and deleted) and bytes on the wire per reading (every
byte the gateway sent to the broker, counted by a pass-through TCP proxy in its own process: MQTT
headers, CONNECT, status and PINGs included; TCP/IP headers not). A platform subscriber checks that
every seq arrived. `drain()` is written to become the `drain` subcommand of scripts/bench_outbox.py.

    .venv/bin/python scripts/bench_uplink.py drain --readings 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway import log as logsetup  # noqa: E402
from gateway.clock import Clock  # noqa: E402
from gateway.model import Reading  # noqa: E402
from tests.integration.uplink_support import Platform, make_uplink, open_outbox  # noqa: E402
from tests.support.broker import Broker, free_port, wait_port  # noqa: E402

PROXY = """
import asyncio, sys
from gateway.simulate.proxy import FaultProxy
async def main():
    p = FaultProxy("127.0.0.1", int(sys.argv[1]), int(sys.argv[2]))
    await p.start()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(p.up_bytes, flush=True)
asyncio.run(main())
"""


BACKLOG_HIGH = 60_000  # readings held in memory by the write-behind: far below its drop bound (as bench_outbox.py)


async def _fill(outbox, clock, n: int, devices: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        outbox.put_reading(Reading(f"hydrant-{i % devices:02d}", clock.now(),
                                   {"pressure_mpa": round(0.30 + (i % 97) / 1000, 3), "temp_c": round(12 + (i % 50) / 10, 1)}, via="modbus_rtu"))
        if i % 5000 == 4999:  # let the write-behind's commits keep up so nothing is dropped as backlog
            # (seqs are assigned at ingest, so last_seq does not show how far the commits got: the memory does)
            while outbox.behind.depth() > BACKLOG_HIGH:
                await asyncio.sleep(0.01)
    # The backlog an outage leaves is in SQLite (the write-behind commits what waits past its interval);
    # without this the drain's timing depended on how much of the fill the tick had written yet.
    await outbox.flush()
    return time.perf_counter() - t0


async def _drain(args: argparse.Namespace, work: Path, url: str) -> dict:
    clock = Clock("assume_synced")
    outbox = await open_outbox(work, clock)
    fill_s = await _fill(outbox, clock, args.readings, args.devices)
    stats = outbox.stats()
    if stats.dropped or stats.evicted:
        raise SystemExit(f"store dropped {stats.dropped} / evicted {stats.evicted} readings while filling: raise its caps")
    up = make_uplink(url, outbox, clock, drain_readings_per_s=1e9, max_inflight=args.inflight, batch_max_readings=args.batch)
    t0 = time.perf_counter()
    task = asyncio.create_task(up.run())
    while sum(outbox.stats().depth.values()) > 0:
        await asyncio.sleep(0.02)
    drain_s = time.perf_counter() - t0
    health = up.health()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await outbox.close()
    return {"fill_s": fill_s, "drain_s": drain_s, "messages": health["messages_published"], "payload_bytes": health["bytes_published"]}


def drain(args: argparse.Namespace) -> None:
    logsetup.setup("warning")
    work = Path(tempfile.mkdtemp(prefix="bench-uplink-", dir=args.dir))
    broker = Broker(work / "mosquitto").start()
    proxy_port = free_port()
    proxy = subprocess.Popen([sys.executable, "-c", PROXY, str(broker.port), str(proxy_port)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    wait_port(proxy_port)
    platform = Platform(broker.port)
    try:
        r = asyncio.run(_drain(args, work, f"mqtt://127.0.0.1:{proxy_port}"))
        wire_bytes = int(proxy.communicate("", timeout=30)[0].strip())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(platform.seqs()) < args.readings:
            time.sleep(0.2)
        got = {s for _c, s in platform.seqs()}
    finally:
        platform.close()
        proxy.kill()
        broker.stop()
    n = args.readings
    out = {
        "readings": n, "fill_s": round(r["fill_s"], 1), "drain_s": round(r["drain_s"], 2),
        "drain_readings_per_s": round(n / r["drain_s"]), "messages": r["messages"],
        "wire_bytes_per_reading": round(wire_bytes / n, 1), "payload_bytes_per_reading": round(r["payload_bytes"] / n, 1),
        "delivered_distinct": len(got), "lost": n - len(got & set(range(1, n + 1))), "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }
    print(json.dumps(out, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("drain", help="drain a backlog to a local mosquitto")
    d.add_argument("--readings", type=int, default=1_000_000)
    d.add_argument("--devices", type=int, default=20)
    d.add_argument("--batch", type=int, default=500, help="uplink.batch_max_readings")
    d.add_argument("--inflight", type=int, default=20, help="uplink.max_inflight")
    d.add_argument("--dir", default=None, help="where the outbox and broker live (default: $TMPDIR)")
    d.set_defaults(fn=drain)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
