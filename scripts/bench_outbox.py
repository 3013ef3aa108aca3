#!/usr/bin/env python3
"""Outbox benchmarks (issue 3): `ingest` (store) and `drain` (uplink).

ingest: readings handed to Outbox.put_reading from the asyncio loop, as the pipeline does, until every one
is committed; reports committed readings/s and bytes written to disk per reading (write_bytes of this
process from /proc/self/io, final checkpoint included), plus the file sizes. `--rate` paces the
readings to a steady rate (the SD-wear figure at a realistic load); without it they go as fast as the
writer takes them (backpressure on the writer's backlog, never drops).

    .venv/bin/python scripts/bench_outbox.py ingest --readings 1000000
    .venv/bin/python scripts/bench_outbox.py ingest --rate 2000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog  # noqa: E402

from gateway.clock import Clock  # noqa: E402
from gateway.config.schema import Store  # noqa: E402
from gateway.model import Reading, RecordClass  # noqa: E402
from gateway.store.outbox import Outbox, proc_write_bytes  # noqa: E402

DEVICES = [f"pump-{i:02d}" for i in range(20)]  # 20 Modbus devices, as in the peer measurement
CHUNK = 2000  # readings per loop turn when unpaced
BACKLOG_HIGH = 60_000  # readings held in memory (write-behind): far below its drop bound (behind.BACKLOG_MAX)


def make_reading(clock: Clock, i: int) -> Reading:
    return Reading(DEVICES[i % len(DEVICES)], clock.now(),
                   {"pressure_mpa": 0.3 + (i % 97) * 0.001, "flow_m3h": 12.0 + (i % 13) * 0.1, "running": True}, "modbus_rtu")


async def ingest(args: argparse.Namespace) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    directory = Path(args.dir or tempfile.mkdtemp(prefix="bench-outbox-"))
    path = directory / "outbox.db"
    for p in directory.glob("outbox.db*"):
        p.unlink()
    clock = Clock("assume_synced")
    cfg = Store(path=str(path), commit_interval_s=args.commit_interval_s, harden_interval_s=args.harden_interval_s,
                max_bytes=4 * 1024**3, telemetry_max_rows=50_000_000)
    ob = Outbox(cfg, clock, structlog.get_logger(), {"mqtt": set(RecordClass)})
    await ob.open()
    behind = ob.behind  # the bench watches the write-behind backlog to apply backpressure instead of dropping
    w0, cpu0, t0 = proc_write_bytes(), time.process_time(), time.monotonic()
    total = args.readings if not args.rate else int(args.rate * args.seconds)
    sent = 0
    while sent < total:
        if args.rate:
            due = int((time.monotonic() - t0) * args.rate)
            n = min(due, total) - sent
            if n <= 0:
                await asyncio.sleep(0.005)
                continue
        else:
            if behind.depth() > BACKLOG_HIGH:
                await asyncio.sleep(0.002)
                continue
            n = min(CHUNK, total - sent)
        for i in range(sent, sent + n):
            ob.put_reading(make_reading(clock, i))
        sent += n
        await asyncio.sleep(0)
    await ob.flush()
    t_commit = time.monotonic() - t0
    st = ob.stats()
    await ob.close()  # final checkpoint: the copy into the database file is part of the cost per reading
    written = proc_write_bytes() - w0
    cpu = time.process_time() - cpu0
    db = sum(p.stat().st_size for p in directory.glob("outbox.db*") if p.suffix != ".ballast")
    assert st.dropped == 0 and st.depth["telemetry"] == total, st
    print(f"readings committed     {total:,}")
    print(f"elapsed to last commit {t_commit:.2f} s   ({total / t_commit:,.0f} readings/s"
          f"{'' if not args.rate else f', paced at {args.rate:,}/s'})")
    print(f"bytes written to disk  {written:,} ({written / total:.1f} bytes/reading, /proc/self/io write_bytes,"
          f" final checkpoint included)")
    print(f"database on disk       {db:,} bytes ({db / total:.1f} bytes/reading stored)")
    print(f"CPU                    {cpu:.2f} s ({cpu / total * 1e6:.1f} µs/reading); max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    print(f"settings               commit_interval_s={args.commit_interval_s} harden_interval_s={args.harden_interval_s} dir={directory}")


def drain(args: argparse.Namespace) -> None:
    """The uplink half (drain of a backlog to a local mosquitto): lives in scripts/bench_uplink.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_uplink", Path(__file__).with_name("bench_uplink.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    mod.drain(args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ing = sub.add_parser("ingest", help="durable ingest rate and bytes written per reading")
    ing.add_argument("--readings", type=int, default=1_000_000)
    ing.add_argument("--rate", type=int, default=0, help="pace to this many readings/s (0: as fast as possible)")
    ing.add_argument("--seconds", type=float, default=30.0, help="with --rate: how long")
    ing.add_argument("--commit-interval-s", type=float, default=1.0)
    ing.add_argument("--harden-interval-s", type=float, default=10.0)
    ing.add_argument("--dir", default="", help="directory for the database (default: a new tmp dir on disk)")
    dr = sub.add_parser("drain", help="drain a backlog to a local mosquitto (uplink)")
    dr.add_argument("--readings", type=int, default=1_000_000)
    dr.add_argument("--devices", type=int, default=20)
    dr.add_argument("--batch", type=int, default=500, help="uplink.batch_max_readings")
    dr.add_argument("--inflight", type=int, default=20, help="uplink.max_inflight")
    dr.add_argument("--dir", default=None, help="where the outbox and broker live (default: $TMPDIR)")
    args = ap.parse_args()
    if args.cmd == "ingest":
        asyncio.run(ingest(args))
    else:
        drain(args)


if __name__ == "__main__":
    main()
