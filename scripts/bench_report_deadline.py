#!/usr/bin/env python3
"""Reporting deadline (issue 23, GB 26875.1 §4.1: fire alarms at the centre within 10 s): from a detector
frame's arrival (`Pipeline.emit`, the Event's own stamp) to (a) the simulated centre receiving the GB/T
26875.3 part-state frame with the fire-alarm bit (it answers CONFIRM in the same callback) and (b) the
platform's MQTT subscriber receiving the alarm record (after the broker's PUBACK to the gateway).

Everything real except the radio: Outbox (WAL, alarms synchronous=FULL), RuleEngine, GB26875Client with
production timers (ack 3 s, 3 retries, reconnect 1..30 s), Uplink (MQTT v5) to a mosquitto subprocess.
Phases: steady under --readings-per-s of background telemetry; then --outages cycles where the centre
(then the broker) is down for --outage-s while an alarm arrives, and comes back on the same port.

Usage: .venv/bin/python scripts/bench_report_deadline.py [--alarms 40] [--readings-per-s 1000] [--outages 5] [--outage-s 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway import log as logsetup  # noqa: E402
from gateway.actions.schema import Notify, Sounder  # noqa: E402
from gateway.clock import Clock  # noqa: E402
from gateway.model import Event, EventKind, Reading  # noqa: E402
from gateway.pipeline import Pipeline  # noqa: E402
from gateway.rules.engine import RuleEngine  # noqa: E402
from gateway.uplink.gb26875.client import GB26875Client  # noqa: E402
from gateway.uplink.gb26875.mapping import part_address  # noqa: E402
from gateway.uplink.gb26875.objects import PartBit, TypeFlag  # noqa: E402
from gateway.uplink.gb26875.simulator import Centre  # noqa: E402
from tests.integration.gb26875_support import cfg as gb_cfg  # noqa: E402
from tests.integration.gb26875_support import open_outbox  # noqa: E402
from tests.integration.uplink_support import Platform, make_uplink  # noqa: E402
from tests.support.broker import Broker  # noqa: E402
from tests.support.stats import pct  # noqa: E402
from tests.unit.rules_support import CONTACTS, DEVICES, rules  # noqa: E402

SMOKES = ["smoke-401", "smoke-502", "smoke-b3"]
RULES = [{"kind": "event", "id": "smoke", "severity": "critical", "title": "烟感报警", "types": ["smoke"],
          "events": ["alarm"], "codes": ["smoke"], "actions": ["sounder"],
          # Many alarms per device in a few minutes is the bench, not a flapping detector: do not hold clears.
          "flap_max": 100, "flap_window_s": 1}]


class TimedPlatform(Platform):
    def __init__(self, port: int) -> None:
        self.at: list[tuple[float, dict]] = []
        super().__init__(port)

    def _on_message(self, topic: str, payload: bytes, retain: bool) -> None:
        super()._on_message(topic, payload, retain)
        if topic.endswith("/alarm"):
            self.at.append((time.monotonic(), json.loads(payload)))


class Ctx:
    async def actuate(self, command) -> None:
        return None

    async def send_sms(self, number: str, text: str, urgent: bool = False) -> None:
        return None

    def uplink_down_for_s(self) -> float:
        return 0.0

    def notify_uplink(self) -> None:
        return None


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_s": round(statistics.median(values), 3), "p95_s": round(pct(values, 95), 3),
            "max_s": round(max(values), 3), "over_10_s": sum(1 for v in values if v > 10.0)}


async def until(cond, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.002)


async def main(args) -> dict:
    logsetup.setup("critical")
    tmp = Path(tempfile.mkdtemp(prefix="bench-deadline-"))
    broker = Broker(tmp / "broker").start()
    try:
        return await measure(args, tmp, broker)
    finally:
        broker.stop()  # also when a phase fails: never leave a broker behind


async def measure(args, tmp: Path, broker: Broker) -> dict:
    clock = Clock("assume_synced")
    ob = await open_outbox(tmp, clock)
    platform = TimedPlatform(broker.port)
    centre = await Centre().start()
    gb = GB26875Client(gb_cfg(centre.port, ack_timeout_s=3.0, retries=3, heartbeat_period_s=60, reconnect_base_s=1.0,
                              reconnect_cap_s=30.0), ob, DEVICES, clock, logsetup.get())
    uplink = make_uplink(broker.url, ob, clock)
    engine = RuleEngine(rules(RULES), DEVICES, ob, Ctx(), clock, logsetup.get(),
                        notify=Notify(sounder=Sounder(device="guard-relay")), contacts=CONTACTS)
    await engine.start()
    pipeline = Pipeline(ob, engine, DEVICES, logsetup.get())
    tasks = [asyncio.create_task(x) for x in (pipeline.run(), engine.run(), gb.run(), uplink.run())]
    await until(lambda: gb.state == "connected" and uplink.health().get("state") == "connected")
    rng = random.Random(1)
    stop = asyncio.Event()
    readings = 0

    async def telemetry() -> None:
        nonlocal readings
        ids = [d for d in DEVICES if d not in SMOKES and d != "guard-relay"]
        t0 = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - t0) * args.readings_per_s) - readings
            for _ in range(due):
                pipeline.emit(Reading(rng.choice(ids), clock.now(), {"pressure_mpa": 0.3 + rng.random() * 0.01}))
            readings += max(0, due)
            await asyncio.sleep(0.01)

    def centre_seen(c: Centre, addr: int, after: float) -> float | None:
        for r in c.data_frames(TypeFlag.PART_STATE):
            if r.at_mono_s >= after and any(o.part_addr == addr and o.state & PartBit.FIRE_ALARM for o in r.objects):
                return r.at_mono_s
        return None

    def platform_seen(device: str, after: float) -> float | None:
        return next((t for t, d in list(platform.at) if t >= after and d.get("device") == device
                     and d.get("body", {}).get("transition") == "raised"), None)

    async def one_alarm(during=None) -> tuple[float, float]:
        nonlocal centre
        device = rng.choice(SMOKES)
        addr = part_address(device, {})
        ev = Event(device, EventKind.ALARM, clock.now(), code="smoke")
        arrival = ev.stamp.mono_ns / 1e9
        pipeline.emit(ev)
        if during is not None:
            await during()
        await until(lambda: centre_seen(centre, addr, arrival) and platform_seen(device, arrival), 120)
        lat = (centre_seen(centre, addr, arrival) - arrival, platform_seen(device, arrival) - arrival)
        pipeline.emit(Event(device, EventKind.ALARM_CLEARED, clock.now(), code="smoke"))  # the detector clears
        # The event rule clears itself; once the clear reached the centre the next alarm is a change again.
        await until(lambda: not engine.active() and gb.mapper.state(device) == PartBit.NORMAL, 60)
        await asyncio.sleep(rng.uniform(0.2, 0.6))
        return lat

    results: dict[str, dict[str, list[float]]] = {k: {"centre": [], "platform": []} for k in ("steady", "centre_down", "broker_down")}
    load = asyncio.create_task(telemetry())
    t_start = time.monotonic()
    for _ in range(args.alarms):
        c, p = await one_alarm()
        results["steady"]["centre"].append(c)
        results["steady"]["platform"].append(p)
    steady_s = time.monotonic() - t_start
    port = centre.port
    for _ in range(args.outages):
        await centre.stop()

        async def centre_back() -> None:
            nonlocal centre
            await asyncio.sleep(args.outage_s)
            centre = await Centre(port=port).start()

        c, p = await one_alarm(centre_back)
        results["centre_down"]["centre"].append(c)
        results["centre_down"]["platform"].append(p)
    for _ in range(args.outages):
        broker.stop()

        async def broker_back() -> None:
            await asyncio.sleep(args.outage_s)
            await asyncio.get_running_loop().run_in_executor(None, broker.start)

        c, p = await one_alarm(broker_back)
        results["broker_down"]["centre"].append(c)
        results["broker_down"]["platform"].append(p)
    stop.set()
    await load
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    platform.close()
    await centre.stop()
    await ob.close()
    return {
        "path": "Pipeline.emit (frame decoded) -> centre receives fire part-state frame | platform receives alarm record",
        "gb26875_timers": {"ack_timeout_s": 3.0, "retries": 3, "reconnect_base_s": 1.0, "reconnect_cap_s": 30.0},
        "background_readings_per_s": round(readings / (time.monotonic() - t_start)),
        "steady_seconds": round(steady_s, 1), "outage_s": args.outage_s,
        **{f"{phase}.{who}": summary(v) for phase, d in results.items() for who, v in d.items()},
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alarms", type=int, default=40)
    ap.add_argument("--readings-per-s", type=float, default=1000.0)
    ap.add_argument("--outages", type=int, default=5)
    ap.add_argument("--outage-s", type=float, default=3.0)
    print(json.dumps(asyncio.run(main(ap.parse_args())), ensure_ascii=False, indent=2))
