"""Crash durability of the outbox: a writer SIGKILLed at random loses no committed record.

SIGKILL proves crash durability only (SQLite survives it in any synchronous mode; CLARIFICATIONS
"Proof suite"); the power-loss promise is test_store_fsync.py's job.
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

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20

# The child commits alarms one after another (printing each seq put() returned, i.e. committed) while
# readings stream into the group commit beside them.
CHILD = r"""
import asyncio, sys
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout carries the seqs
from gateway.clock import Clock
from gateway.model import RecordClass, Reading
from tests.unit.store_support import make_outbox

async def main(path):
    clock = Clock("assume_synced")
    ob = make_outbox(path, clock, commit_interval_s=0.02)
    await ob.open()
    print("open", ob.store_id, flush=True)
    i = 0
    while True:
        for _ in range(50):
            ob.put_reading(Reading("pump-1", clock.now(), {"i": i}, "modbus_rtu"))
        seq = await ob.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"i": i})
        print(seq, flush=True)
        i += 1

asyncio.run(main(sys.argv[1]))
"""


def run_and_kill(path: Path, rng: random.Random) -> tuple[str, list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    assert first and first[0] == "open", f"child did not open the store: {first}"
    deadline = time.monotonic() + rng.uniform(0.05, 0.4)
    seqs: list[int] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seqs.append(int(line))
    proc.send_signal(signal.SIGKILL)
    rest = proc.stdout.read()  # lines printed before the kill landed count too
    proc.wait(10)
    seqs += [int(x) for x in rest.split()]
    return first[1], seqs


@pytest.mark.slow  # over 5 s (issue 16)
@pytest.mark.timeout(240)
def test_sigkilled_writer_keeps_every_committed_alarm_and_the_seq_keeps_rising(tmp_path):
    path = tmp_path / "o.db"
    rng = random.Random(3)
    printed: list[int] = []
    store_ids = set()
    for _ in range(KILLS):
        store_id, seqs = run_and_kill(path, rng)
        store_ids.add(store_id)
        assert seqs, "the child committed nothing before the kill"
        if printed:
            assert seqs[0] > printed[-1], "a seq was reused after a crash"
        printed += seqs
    assert len(store_ids) == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = {r[0] for r in conn.execute("SELECT seq FROM record WHERE cls = 0")}
    missing = sorted(set(printed) - stored)
    assert not missing, f"{len(missing)} committed alarms lost, e.g. {missing[:5]}"
    tele = [r[0] for r in conn.execute("SELECT seq FROM telemetry ORDER BY seq")]
    assert tele and not set(tele) & stored  # one seq space across classes
