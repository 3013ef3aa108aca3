"""The two demos installers train on, run as they are shipped (issue 18's commissioning and the README's
main job): a broken demo must fail CI, not the next training day. scripts/commission-demo.sh was found
failing on LoRaWAN rows and on a generated config's inline contacts with nothing noticing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(script: str, timeout_s: float, **env: str) -> tuple[str, str]:
    """(stdout, stdout + stderr) of a run that exited 0."""
    proc = subprocess.run(["bash", f"scripts/{script}"], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    return proc.stdout, out


@pytest.mark.timeout(240)
def test_commission_demo_imports_the_sheet_and_walks_every_device() -> None:
    _, out = _run("commission-demo.sh", 220)
    assert "43 devices ok" in out and "devices (43/43 passed)" in out
    walk = out.split("== timings")[1]
    assert "walk test (simulator presses every device)" in walk and "total" in walk


@pytest.mark.timeout(200)
def test_demo_raises_the_scripted_smoke_alarm_and_leaves_nothing_running() -> None:
    stdout, out = _run("demo.sh", 180, DEMO_SECONDS="45")
    assert "ALARM smoke-alarm (critical) at 2栋1单元301" in out
    assert "ALARM 烟感报警 raised at 2栋1单元301" in out  # the platform side saw it
    assert stdout.rstrip().endswith("demo stopped; nothing left running.")
