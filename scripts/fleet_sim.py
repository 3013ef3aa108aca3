#!/usr/bin/env python3
"""Fleet simulation (issue 21): N gateways, each a real Uplink with its own real Outbox (SQLite), several
per worker process, publishing at a courtyard's rate with random alarms to one mosquitto; the broker is
stopped and restarted mid-run while the reference platform consumer (gateway.platform) takes it all in.

Reports connects/s after the restart (peak, spread), time until every gateway is back, time until every
backlog is drained, records lost and duplicates (per (gateway_id, store_id, seq), from the consumer's
ledger), CPU seconds and memory per simulated gateway, and the broker intake in steady state.

    .venv/bin/python scripts/fleet_sim.py --gateways 700 --per-process 100 --connect-jitter 10
    .venv/bin/python scripts/fleet_sim.py --gateways 100 --json        # what the CI test runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---- worker: K gateways in one process and one loop --------------------------------------------
async def worker(args: argparse.Namespace) -> None:
    import msgspec

    from gateway import log as logsetup
    from gateway.clock import Clock
    from gateway.config.schema import Credentials, Identity, Store
    from gateway.config.schema import Uplink as UplinkCfg
    from gateway.model import Reading, RecordClass
    from gateway.store.outbox import Outbox
    from gateway.uplink.client import Uplink

    logsetup.setup("error")
    clock = Clock("assume_synced")
    rng = random.Random(args.first)
    fleet = []
    for i in range(args.first, args.first + args.count):
        gw = f"gw-{i:04d}"
        d = Path(args.dir) / gw
        d.mkdir(parents=True, exist_ok=True)
        ob = Outbox(Store(path=str(d / "outbox.db"), commit_interval_s=1.0, ballast_bytes=0), clock, logsetup.get(), {"mqtt": set(RecordClass)})
        await ob.open()
        cfg = msgspec.structs.replace(UplinkCfg(broker_url=args.broker), connect_jitter_s=args.connect_jitter, status_interval_s=60.0)
        fleet.append((gw, ob, Uplink(cfg, Credentials(), Identity(gateway_id=gw), ob, clock, logsetup.get())))
    tasks = [asyncio.create_task(up.run()) for _gw, _ob, up in fleet]
    connects: dict[str, list[float]] = {gw: [] for gw, _ob, _up in fleet}
    produced = {"readings": 0, "alarms": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stdin_closed() -> None:  # the parent closes our stdin: stop producing (EOF stays readable: stop watching)
        loop.remove_reader(sys.stdin.fileno())
        stop.set()

    loop.add_reader(sys.stdin.fileno(), stdin_closed)

    empty_at: dict[str, float] = {}  # after its reconnect: when the gateway's outbox was first empty again

    async def watch_states() -> None:  # wall time of every transition to connected (all processes share the clock)
        was = {gw: False for gw in connects}
        tick = 0
        while True:
            tick += 1
            for gw, ob, up in fleet:
                now_up = up.state == "connected"
                if now_up and not was[gw]:
                    connects[gw].append(time.time())
                was[gw] = now_up
                # Backlog drained: checked every 0.5 s once reconnected after the outage (a depth query each).
                if tick % 10 == 0 and now_up and len(connects[gw]) >= 2 and gw not in empty_at and not sum(ob.stats().depth.values()):
                    empty_at[gw] = time.time()
            await asyncio.sleep(0.05)

    async def produce() -> None:
        period = 1.0 / max(args.readings_per_s, 1e-6)
        while not stop.is_set():
            t0 = time.monotonic()
            for gw, ob, _up in fleet:
                ob.put_reading(Reading(f"{gw}-dev{rng.randrange(30)}", clock.now(), {"pressure_mpa": round(rng.uniform(0.2, 0.4), 3)}, via="sim"))
                produced["readings"] += 1
                if rng.random() < period / args.alarm_every_s:
                    await ob.put(RecordClass.ALARM, "alarm.raised", f"{gw}-smoke", clock.now(), {"title": "smoke"})
                    produced["alarms"] += 1
            await asyncio.sleep(max(0.0, period - (time.monotonic() - t0)))

    watcher = asyncio.create_task(watch_states())
    print(json.dumps({"started": args.count}), flush=True)
    await produce()
    deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < deadline and any(sum(ob.stats().depth.values()) for _gw, ob, _up in fleet):
        await asyncio.sleep(0.2)
    drained_at = time.time()
    stores = {gw: {"store_id": ob.store_id, "last_seq": ob.stats().last_seq, "left": sum(ob.stats().depth.values())} for gw, ob, _up in fleet}
    for t in tasks + [watcher]:
        t.cancel()
    stuck = {"uplink_stop": 0, "outbox_close": 0}  # bounded teardown: a hang is counted, not waited out
    try:
        await asyncio.wait_for(asyncio.gather(*tasks, watcher, return_exceptions=True), 30)
    except asyncio.TimeoutError:
        stuck["uplink_stop"] = sum(not t.done() for t in tasks)
    for _gw, ob, _up in fleet:
        try:
            await asyncio.wait_for(ob.close(), 15)
        except asyncio.TimeoutError:
            stuck["outbox_close"] += 1
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"stores": stores, "connects": connects, "drained_at": drained_at, "empty_at": empty_at, "produced": produced, "stuck": stuck,
                      "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss, "count": args.count}), flush=True)


# ---- parent: broker, consumer, workers, the restart, the report --------------------------------
def run(args: argparse.Namespace) -> dict:
    from gateway.platform.consumer import PlatformConsumer
    from tests.support.broker import Broker

    work = Path(tempfile.mkdtemp(prefix="fleet-sim-"))
    broker = Broker(work / "mosquitto", extra_conf="max_connections -1\n").start()
    intake = {"messages": 0, "bytes": 0}

    def count(_topic: str, payload: bytes, _retain: bool) -> None:
        intake["messages"] += 1
        intake["bytes"] += len(payload)

    # Not a shared subscription by default: mosquitto 2.0 drops a shared-subscription message when no
    # member of the group is connected (measured here: the backlog drained while the consumer was
    # still reconnecting after the broker restart was lost); a plain persistent session queues it.
    consumer = PlatformConsumer(broker.url, client_id="fleet-platform", group=args.group, on_message=count)
    consumer.start()
    workers: list[subprocess.Popen] = []
    try:
        return _measure(args, broker, consumer, workers, intake)
    finally:  # never leave a broker or a worker behind, whatever failed
        for w in workers:
            if w.poll() is None:
                w.kill()
        consumer.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def _measure(args: argparse.Namespace, broker, consumer, workers: list, intake: dict) -> dict:
    from tests.support.broker import wait_port

    for first in range(0, args.gateways, args.per_process):
        n = min(args.per_process, args.gateways - first)
        cmd = [sys.executable, __file__, "--worker", "--first", str(first), "--count", str(n), "--broker", broker.url,
               "--dir", str(broker.dir.parent / "gw"), "--connect-jitter", str(args.connect_jitter), "--readings-per-s", str(args.readings_per_s),
               "--alarm-every-s", str(args.alarm_every_s), "--drain-timeout", str(args.drain_timeout)]
        workers.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for w in workers:
        w.stdout.readline()  # {"started": n}
    t_start = time.time()
    time.sleep(args.before_s)
    m0, b0, t0 = intake["messages"], intake["bytes"], time.monotonic()
    time.sleep(min(5.0, args.before_s))
    steady = {"messages_per_s": (intake["messages"] - m0) / (time.monotonic() - t0), "bytes_per_s": (intake["bytes"] - b0) / (time.monotonic() - t0)}
    broker.stop(signal.SIGKILL if args.kill else signal.SIGTERM)
    t_down = time.time()
    time.sleep(args.outage_s)
    broker.start()
    wait_port(broker.port)
    t_back = time.time()
    time.sleep(args.after_s)
    results = []
    for w in workers:
        w.stdin.close()  # stop producing, drain, report
    for w in workers:
        out = w.stdout.read()  # until the worker exits (bounded by its own --drain-timeout and teardown bounds)
        w.wait(timeout=60)
        lines = out.strip().splitlines()
        if not lines or not lines[-1].startswith('{"stores"'):
            raise RuntimeError(f"worker {w.args[3:7]} exited {w.returncode} without its report")
        results.append(json.loads(lines[-1]))
    want = {(gw, s["store_id"]): s["last_seq"] for r in results for gw, s in r["stores"].items()}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with consumer.lock:
            got = {k: st.floor for k, st in consumer.ledger.stores.items()}
        if all(got.get(k, 0) >= last for k, last in want.items()):
            break
        time.sleep(0.5)
    with consumer.lock:
        stores = dict(consumer.ledger.stores)
        lost = sum(len(set(range(1, last + 1)) - stores[k].seqs()) if k in stores else last for k, last in want.items())
        dups = consumer.ledger.duplicates
        if os.environ.get("FLEET_DEBUG"):
            for k, last in list(want.items())[:3]:
                print("missing", k, last, sorted(set(range(1, last + 1)) - (stores[k].seqs() if k in stores else set()))[:40], file=sys.stderr)
    reconnects = sorted(min((t for t in r["connects"][gw] if t >= t_back), default=float("inf")) - t_back
                        for r in results for gw in r["connects"])
    per_s = Counter(int(t) for t in reconnects if t != float("inf"))
    cpu = sum(r["cpu_s"] for r in results)
    return {
        "gateways": args.gateways, "processes": len(workers), "connect_jitter_s": args.connect_jitter, "kill": args.kill,
        "run_s": round(time.time() - t_start, 1), "outage_s": round(t_back - t_down, 1),
        "back_within_s": round(max(reconnects), 2), "never_back": sum(t == float("inf") for t in reconnects),
        "connects_per_s_peak": max(per_s.values(), default=0), "connects_per_s": dict(sorted(per_s.items())),
        "reconnect_spread_s": round(max(reconnects) - min(reconnects), 2),
        "backlogs_drained_within_s": round(max((t for r in results for t in r["empty_at"].values()), default=float("nan")) - t_back, 1),
        "backlogs_not_drained": args.gateways - sum(len(r["empty_at"]) for r in results),
        "left_in_outboxes": sum(s["left"] for r in results for s in r["stores"].values()),
        "records": sum(want.values()), "lost": lost, "duplicates": dups,
        "produced": {k: sum(r["produced"][k] for r in results) for k in ("readings", "alarms")},
        "teardown_stuck": {k: sum(r["stuck"][k] for r in results) for k in ("uplink_stop", "outbox_close")},
        "cpu_s_per_gateway": round(cpu / args.gateways, 3), "cpu_pct_per_gateway": round(100 * cpu / args.gateways / (time.time() - t_start), 3),
        "rss_kb_per_gateway": round(sum(r["maxrss_kb"] for r in results) / args.gateways, 1),
        "broker_intake_steady": {k: round(v, 1) for k, v in steady.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateways", type=int, default=700)
    ap.add_argument("--per-process", type=int, default=100)
    ap.add_argument("--connect-jitter", type=float, default=10.0, help="uplink.connect_jitter_s of every gateway")
    ap.add_argument("--readings-per-s", type=float, default=0.5, help="per gateway (30 devices, one reading a minute)")
    ap.add_argument("--alarm-every-s", type=float, default=120.0, help="mean seconds between alarms per gateway")
    ap.add_argument("--before-s", type=float, default=15.0)
    ap.add_argument("--outage-s", type=float, default=10.0)
    ap.add_argument("--after-s", type=float, default=20.0)
    ap.add_argument("--drain-timeout", type=float, default=120.0)
    ap.add_argument("--group", default="", help="consume through $share/<group>/ (see docs/platform.md: offline groups lose messages)")
    ap.add_argument("--kill", action="store_true", help="SIGKILL the broker (loses what it had not saved) instead of SIGTERM")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--broker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--dir", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        asyncio.run(worker(args))
        return
    report = run(args)
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
