"""The benchmark scripts behind docs/BENCHMARKS.md must keep running: two of them had rotted unnoticed
(bench_alarm_latency re-raised its own alarm after a manual clear and waited for a sounder that never
came; bench_report_deadline's platform listened with a callback signature the consumer no longer
called). Short runs, real parts (the real outbox and rule engine, a real mosquitto, the GB/T 26875.3
centre simulator); what is asserted is that every measurement happened, never how fast it was —
performance is quoted from full runs, not from CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(script: str, *args: str, timeout_s: float = 150) -> str:
    proc = subprocess.run([sys.executable, f"scripts/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


@pytest.mark.timeout(120)
def test_alarm_latency_bench_measures_every_alarm_it_raises() -> None:
    out = json.loads(_run("bench_alarm_latency.py", "--seconds", "3", "--readings-per-s", "500"))
    assert out["store"].endswith("(real)")
    assert out["alarms"] >= 2
    for figure in ("sounder_actuate_ms", "record_committed_ms"):
        assert set(out[figure]) == {"p50", "p99", "max"} and out[figure]["p50"] <= out[figure]["max"]
    assert out["on_item_cpu_us_per_reading"] > 0


@pytest.mark.timeout(180)
def test_report_deadline_bench_sees_each_alarm_at_the_centre_and_the_platform() -> None:
    out = json.loads(_run("bench_report_deadline.py", "--alarms", "2", "--outages", "1", "--outage-s", "1",
                          "--readings-per-s", "200", timeout_s=170))
    for phase, n in (("steady", 2), ("centre_down", 1), ("broker_down", 1)):
        for side in ("centre", "platform"):
            assert out[f"{phase}.{side}"]["n"] == n, out
