#!/usr/bin/env python3
"""Bytes the daemon writes per day in the simulated demo courtyard (issue 17, target <= 50 MB/day;
docs/BENCHMARKS.md "## SD-card writes and telemetry age").

Runs the simulated courtyard (`gateway simulate --courtyard config/demo/courtyard.toml`, the one
scripts/demo.sh shows) against a local mosquitto and `gateway run` on the config it writes, lets it
settle for --warmup-s (the file's scripted scenario — alarms, an uplink outage, the welfare alarm —
plays in the first ~130 s and is not a day's rate; its alarms escalate until ~6 min), then reads the
daemon's /proc/PID/io write_bytes over --seconds and projects it to a day two ways: the window's rate
for 24 h, and a day of this courtyard as it runs — everything written from the daemon's start through
the warm-up (new database, the whole scenario once) plus the window's rate for the rest of the day.
With --warmup-s past the escalations (420) the second is the figure for the target; the first counts
the scenario as often as the window would repeat in a day if the window holds part of it. Also prints what the daemon
itself reports (`gateway status` -> store.bytes_written_per_day, projected from its last hour) and the
files under the state directory, so what writes is visible.

    .venv/bin/python scripts/bench_demo_sdwear.py --warmup-s 420 --seconds 300
    .venv/bin/python scripts/bench_demo_sdwear.py --root /tmp/before ...   # another checkout
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.control.client import DaemonUnavailable, call  # noqa: E402
from tests.support.broker import Broker  # noqa: E402

DAY_S = 86400


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def status(sock: str) -> dict:
    try:
        resp = call(sock, "status", timeout_s=5)
    except DaemonUnavailable:
        return {}
    return resp.result if resp.ok else {}


def state_files(cfg: dict) -> list[tuple[str, int]]:
    """Every file under the directory of the outbox (the daemon's state dir), with its size."""
    state = Path(cfg["store"]["path"]).parent
    return sorted((str(p.relative_to(state)), p.stat().st_size) for p in state.rglob("*") if p.is_file())


def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-demo-sdwear-"))
    broker = Broker(work / "mosq").start()
    code_root = Path(args.root).resolve()
    env = {**os.environ, "PYTHONPATH": str(code_root), "COURTYARD_SIM_SOCKET": str(work / "sim.sock")}
    gw_cfg = work / "gateway.toml"
    sim = subprocess.Popen([sys.executable, "-m", "gateway", "simulate", "--courtyard", str(code_root / "config/demo/courtyard.toml"),
                            "--gateway-config", str(gw_cfg), "--broker", broker.url, "--trigger-socket", str(work / "sim.sock")],
                           cwd=code_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    daemon = None
    try:
        deadline = time.monotonic() + 60
        while not (work / "sim.sock").exists():
            if time.monotonic() > deadline or sim.poll() is not None:
                raise SystemExit("the simulated courtyard did not start")
            time.sleep(0.2)
        cfg = tomllib.loads(gw_cfg.read_text())
        sock = cfg["control"]["socket"]
        daemon = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(gw_cfg)], cwd=code_root, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        tracer = None
        if args.strace:  # what writes: every write/fsync/rename of the daemon's threads during the run
            tracer = subprocess.Popen(["strace", "-f", "-tt", "-y", "-s", "256", "-e", "trace=write,pwrite64,fsync,fdatasync,rename,openat",
                                       "-o", args.strace, "-p", str(daemon.pid)], stderr=subprocess.DEVNULL)
        time.sleep(args.warmup_s)
        b0, t0 = write_bytes(daemon.pid), time.monotonic()
        since_start = t0 - started
        st0 = status(sock)
        n0 = int(st0.get("pipeline", {}).get("readings", 0))
        wb0 = int(st0.get("store", {}).get("telemetry_written_behind", 0))
        time.sleep(args.seconds)
        b1, t1 = write_bytes(daemon.pid), time.monotonic()
        st = status(sock)
        n1 = int(st.get("pipeline", {}).get("readings", 0))
        files = state_files(cfg)
        if tracer is not None:
            tracer.terminate()
            tracer.wait(10)
    finally:
        for p in (daemon, sim):
            if p is not None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    per_s = (b1 - b0) / (t1 - t0)
    readings_per_s = (n1 - n0) / (t1 - t0)
    own = st.get("store", {}).get("bytes_written_per_day", 0)
    behind = int(st.get("store", {}).get("telemetry_written_behind", 0)) - wb0
    day = b0 + per_s * (DAY_S - since_start)
    print(f"demo courtyard ({code_root.name}): {readings_per_s:.2f} readings/s, {per_s:.0f} B/s written by the daemon "
          f"over {args.seconds:g} s after {args.warmup_s:g} s -> {per_s * DAY_S / 1e6:.1f} MB/day at the window's rate; "
          f"a day as it runs (first {since_start:.0f} s with the scenario: {b0 / 1e6:.2f} MB, then the window's rate): "
          f"{day / 1e6:.1f} MB (target <= 50); "
          f"the daemon's own bytes_written_per_day: {own / 1e6:.1f} MB; readings written (not acknowledged in time): {behind}")
    print("state dir: " + ", ".join(f"{name} {size} B" for name, size in files))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--warmup-s", type=float, default=420.0)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--strace", metavar="FILE", help="also strace the daemon's writes into FILE (finding what writes)")
    ap.add_argument("--root", default=str(ROOT), help="checkout whose gateway runs (the script itself stays this one)")
    run(ap.parse_args())
