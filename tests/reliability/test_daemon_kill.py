"""R6 at daemon level: `gateway run` polling a Modbus RTU bus (simulator on a pty) and draining to a real
mosquitto is SIGKILLed at random moments and restarted. Each time: `PRAGMA integrity_check` ok, every
record committed before the kill is still in the store or already at the platform, seqs never reused;
at the end the platform's seq set has no hole (the §6 checker: lost 0, unrecoverable duplicates 0).

SIGKILL proves crash durability only (CLARIFICATIONS "Proof suite"); power loss is test_store_fsync.py.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import sqlite3
import time

import pytest

from gateway.simulate.platform import PlatformView
from tests.support.daemon import DaemonProc, SimThread, write_config
from tests.support.wait import wait_for

KILLS = int(os.environ.get("R6_KILLS", "8"))  # scripts/soak.sh runs 50
GW = "gw-test-01"


def committed(db) -> tuple[str, int, set[int]]:
    """(store_id, last_seq, seqs still in the store) as another process sees the committed database."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'last_seq')"))
        seqs = {s for (s,) in conn.execute("SELECT seq FROM record UNION ALL SELECT seq FROM telemetry")}
        return str(meta["store_id"]), int(meta["last_seq"]), seqs
    finally:
        conn.close()


def integrity(db) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def delivered(view: PlatformView, store_id: str) -> set[int]:
    with view.lock:
        return set(view.ledger.seen.get((GW, store_id), set()))


def payload_conflicts(view: PlatformView) -> int:
    """Same seq delivered twice with different content: a duplicate the platform could not dedupe."""
    first: dict[int, str] = {}
    bad = 0
    with view.lock:
        for rec in view.records:
            body = json.dumps({k: v for k, v in rec.items() if k not in ("topic", "fresh", "received_mono")}, sort_keys=True)
            bad += first.setdefault(rec["seq"], body) != body
    return bad


@pytest.mark.slow  # over 5 s (issue 16)
def test_sigkill_at_random_moments_loses_no_committed_record(tmp_path, broker):
    rng = random.Random(20261129)
    config = write_config(tmp_path, str(tmp_path / "bus"), uplink=f'broker_url = "mqtt://127.0.0.1:{broker.port}"')
    db = tmp_path / "state" / "outbox.db"
    view = PlatformView(broker.url, GW, out=io.StringIO())
    view.start()
    high_water = 0
    ever: set[int] = set()
    try:
        with SimThread(str(tmp_path / "bus")):
            for k in range(KILLS):
                daemon = DaemonProc(config, tmp_path / "run" / "control.sock").start()
                time.sleep(rng.uniform(0.3, 2.5))  # the fault: a power cut at an arbitrary moment
                store_id, last, in_store = committed(db)
                assert last >= high_water and all(s > high_water for s in in_store - ever), "a seq was reused"
                seqs = set(range(1, last + 1))  # seq is assigned inside the commit: all of these are committed
                daemon.proc.send_signal(signal.SIGKILL)
                daemon.proc.wait(10)
                daemon.log.close()
                assert integrity(db) == "ok", f"kill {k}"
                _, after_last, after = committed(db)
                assert after_last >= last
                # Rows deleted between snapshot and kill were PUBACKed, so the platform has them (or soon).
                wait_for(lambda s=seqs, a=after, sid=store_id: not s - a - delivered(view, sid), timeout_s=15,
                         what=f"kill {k}: committed seqs")
                high_water, ever = after_last, ever | seqs
            daemon = DaemonProc(config, tmp_path / "run" / "control.sock").start()
            try:
                wait_for(lambda: ever <= delivered(view, store_id), timeout_s=30, what="backlog drained to the platform")
            finally:
                daemon.stop()
        with view.lock:
            holes = view.ledger.holes().get((GW, store_id), [])
        print(f"\nR6: kills={KILLS} committed={len(ever)} lost={len(holes)} keyed_duplicates={view.ledger.duplicates} "
              f"unrecoverable_duplicates={payload_conflicts(view)}")
        assert holes == [], f"lost seqs {holes[:20]}"
        assert payload_conflicts(view) == 0
        assert len(ever) >= 2 * KILLS  # the daemon really was committing between kills
    finally:
        view.stop()
