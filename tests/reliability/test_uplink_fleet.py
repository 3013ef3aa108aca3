"""R19 fleet reconnect after a clean broker restart (tests/reliability/fleet.py). CI: 20 clients, all
reconnect within cap + jitter + 5 s. Soak (FLEET_N=100): the reconnects also spread (no 1-s bucket > 2x mean)."""

from __future__ import annotations

import asyncio
import os

from tests.reliability.fleet import CAP_S, JITTER_S, report, run_fleet

N = int(os.environ.get("FLEET_N", "20"))


def test_r19_fleet_reconnects_after_broker_restart_within_cap_plus_jitter(broker, tmp_path):
    result = asyncio.run(run_fleet(broker, N, tmp_path))
    print("\n" + report(result))
    assert result.gave_up == 0 and len(result.reconnect_s) == N
    assert max(result.reconnect_s) <= CAP_S + JITTER_S + 5
    if N >= 100:
        assert result.worst_bucket_ratio() <= 2.0
