"""The power-cut window of the write-behind outbox (issue 17): a process SIGKILLed at a random moment,
with its consumer acknowledging (the broker up) and with nothing acknowledged (the broker down).

Each time: every alarm put() returned is in the store or was acknowledged; every reading is in the
store or was acknowledged unless it arrived within the last commit_interval_s (+ scheduling slack)
before the kill; no seq is ever reused after a restart, and each unclean stop leaves a store.seq_gap
record. SIGKILL proves crash durability only (CLARIFICATIONS "Proof suite"). scripts/soak.sh runs 20.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.store.codec import decode_tele

ROOT = Path(__file__).resolve().parents[2]
KILLS = int(os.environ.get("POWERCUT_KILLS", "3"))
COMMIT_INTERVAL_S = 0.2
SLACK_S = 0.3  # a loaded CI machine runs the write-behind tick late by up to this

# Prints "r <i> <t>" when reading i is ingested, "a <i> .." when readings are acknowledged (ack()
# returned), "A <seq>" when an alarm is committed; t is CLOCK_MONOTONIC, shared with the parent.
CHILD = r"""
import asyncio, random, sys, time
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
from gateway.clock import Clock
from gateway.model import RecordClass, Reading
from tests.unit.store_support import make_outbox

async def main(path, start, acking):
    clock = Clock("assume_synced")
    ob = make_outbox(path, clock, commit_interval_s=float(sys.argv[4]))
    await ob.open()
    print("open", ob.store_id, flush=True)
    rng = random.Random()

    async def consumer():
        held = set()
        while True:
            recs = [r for r in ob.fetch("mqtt", 200, exclude=held) if r.kind == "reading"]
            held.update(r.seq for r in recs)
            await asyncio.sleep(rng.uniform(0.0, 0.15))  # the PUBACK's round trip
            await ob.ack("mqtt", [r.seq for r in recs])
            if recs:
                print("a", *[r.body["values"]["i"] for r in recs], flush=True)
            await asyncio.sleep(0.01)

    if acking:
        asyncio.get_running_loop().create_task(consumer())
    i = start
    while True:
        for _ in range(10):
            ob.put_reading(Reading("pump-1", clock.now(), {"i": i}, "modbus_tcp"))
            print("r", i, time.monotonic(), flush=True)
            i += 1
        if i % 100 == 0:
            print("A", await ob.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"i": i}), flush=True)
        await asyncio.sleep(0.005)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"))
"""


def stored(db: Path) -> tuple[set[int], set[int], list[int], int]:
    """(reading values i, alarm seqs, seq_gap up_to values, highest seq) in the committed database."""
    conn = sqlite3.connect(db)
    try:
        tele = conn.execute("SELECT seq, body FROM telemetry").fetchall()
        recs = conn.execute("SELECT seq, kind, body FROM record").fetchall()
    finally:
        conn.close()
    readings = {int(decode_tele(b).values[0]) for _, b in tele}
    alarms = {seq for seq, kind, _ in recs if kind == "alarm.raised"}
    gaps = [seq for seq, kind, _ in recs if kind == "store.seq_gap"]
    top = max([s for s, _ in tele] + [s for s, _, _ in recs] + [0])
    return readings, alarms, gaps, top


def run_and_kill(db: Path, start: int, acking: bool, rng: random.Random) -> tuple[dict[int, float], set[int], set[int], float]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(start), "1" if acking else "0", str(COMMIT_INTERVAL_S)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    head = proc.stdout.readline().split()
    assert head[:1] == ["open"], head
    time.sleep(rng.uniform(0.4, 1.5))
    t_kill = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    out = proc.stdout.read()
    proc.wait(10)
    ingested: dict[int, float] = {}
    acked: set[int] = set()
    alarms: set[int] = set()
    for line in out.splitlines():
        w = line.split()
        if not w or (w[0] != "a" and len(w) < 2):
            continue  # a line cut by the kill
        if w[0] == "r" and len(w) == 3:
            ingested[int(w[1])] = float(w[2])
        elif w[0] == "a":
            acked.update(int(x) for x in w[1:])
        elif w[0] == "A" and int(w[1]):
            alarms.add(int(w[1]))
    return ingested, acked, alarms, t_kill


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("acking", [True, False], ids=["broker_up", "broker_down"])
def test_sigkill_loses_readings_only_within_the_commit_window(tmp_path, acking):
    rng = random.Random(17 + acking)
    db = tmp_path / "o.db"
    start, top_before = 0, 0
    window_lost = 0
    for k in range(KILLS):
        ingested, acked, alarms, t_kill = run_and_kill(db, start, acking, rng)
        readings, in_store_alarms, gaps, top = stored(db)
        assert len(gaps) == k, "each unclean stop leaves one store.seq_gap record (at the next open)"
        assert alarms <= in_store_alarms, f"kill {k}: committed alarms lost"
        assert not alarms or min(alarms) > top_before, f"kill {k}: a seq was reused"
        due = {i for i, t in ingested.items() if t < t_kill - COMMIT_INTERVAL_S - SLACK_S}
        lost = due - readings - acked
        assert not lost, f"kill {k}: readings older than the window lost: {sorted(lost)[:10]}"
        window_lost += len(set(ingested) - readings - acked)
        assert ingested, "the child ingested nothing: the test proved nothing"
        start = max(ingested) + 1
        top_before = max(top, top_before)
    print(f"\npower cut ({'broker up' if acking else 'broker down'}): {KILLS} kills, "
          f"{window_lost} readings lost inside the {COMMIT_INTERVAL_S} s window, none outside it")
