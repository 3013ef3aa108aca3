#!/usr/bin/env python3
"""SD-card write budget and telemetry latency of the whole daemon (issue 17, docs/BENCHMARKS.md
"## SD-card writes and telemetry age").

`gateway run` polls a Modbus TCP simulator (20 units, hydrant_monitor, one reading per poll) every
--period-ms and publishes through a fault proxy to a local mosquitto; a platform subscriber connects to
the broker directly. A steady phase (uplink up), then an outage (the proxy cuts the link) and the drain
after it. From /proc/PID/io, /proc/PID/stat and /proc/PID/status of the daemon and from the subscriber:
bytes written per poll, write syscalls per s, bytes on the wire per reading (every byte the daemon
sent through the proxy: MQTT headers, status and PINGs included), telemetry age p50/p99 (read time -> subscriber), RSS,
CPU, and the platform's holes (lost) and duplicates.

    .venv/bin/python scripts/bench_sdwear.py --period-ms 100 --steady-s 60 --outage-s 60
    .venv/bin/python scripts/bench_sdwear.py --root /tmp/before ...   # the same run on another checkout
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.control.client import DaemonUnavailable, call  # noqa: E402
from gateway.simulate.platform import PlatformView  # noqa: E402
from gateway.simulate.proxy import FaultProxy, Mode  # noqa: E402
from tests.support.broker import Broker, free_port  # noqa: E402
from tests.support.stats import pct  # noqa: E402

GW = "gw-bench-01"
UNITS = 20
TICK_S = os.sysconf("SC_CLK_TCK")


class ProxyThread:
    def __init__(self, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = FaultProxy("127.0.0.1", port)
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)

    def mode(self, mode: Mode) -> None:
        self.loop.call_soon_threadsafe(self.proxy.set_mode, mode)


def profile_text(registers: int | None) -> str:
    """hydrant_monitor, or with only its first `registers` registers (the issue's workload reads 4 per unit)."""
    text = (ROOT / "config" / "profiles" / "hydrant_monitor.toml").read_text()
    if registers is None:
        return text
    blocks = list(re.finditer(r"\[\[modbus\.registers\]\].*?(?=\n\[\[|\Z)", text, re.S))
    for m in reversed(blocks[registers:]):
        text = text[: m.start()] + text[m.end():]
    return text


def config(work: Path, sim_port: int, broker_port: int, period_s: float, linger_ms: float | None,
           registers: int | None = None, telemetry_version: int | None = None, commit_interval_s: float | None = None) -> Path:
    profiles = work / "profiles"
    profiles.mkdir()
    (profiles / "hydrant_monitor.toml").write_text(profile_text(registers))
    devices = "".join(f'[[devices]]\nid = "h{u:02d}"\nprofile = "hydrant_monitor"\nport = "tcp"\naddress = {u}\n\n'
                      for u in range(1, UNITS + 1))
    path = work / "gateway.toml"
    path.write_text(f"""
[identity]
gateway_id = "{GW}"
[clock]
sync = "assume_synced"
[log]
level = "warning"
format = "json"
[uplink]
broker_url = "mqtt://127.0.0.1:{broker_port}"
{"" if linger_ms is None else f"batch_linger_ms = {linger_ms}"}
{"" if telemetry_version is None else f"telemetry_version = {telemetry_version}"}
[store]
path = "{work}/state/outbox.db"
{"" if commit_interval_s is None else f"commit_interval_s = {commit_interval_s}"}
[control]
socket = "{work}/run/control.sock"
[ports.tcp]
driver = "modbus_tcp"
host = "127.0.0.1"
port = {sim_port}
poll_period_s = {period_s}
timeout_s = 1.0

{devices}""")
    return path


def proc_io(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        k, v = line.split(":")
        out[k] = int(v)
    return out


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def readings_ingested(sock: Path) -> int:
    try:
        resp = call(str(sock), "status", timeout_s=5)
    except DaemonUnavailable:
        return 0
    return int(resp.result.get("pipeline", {}).get("readings", 0)) if resp.ok else 0


class Phase:
    def __init__(self, pid: int, sock: Path) -> None:
        self.pid, self.sock = pid, sock
        self.io0, self.cpu0, self.t0, self.n0 = proc_io(pid), cpu_s(pid), time.monotonic(), readings_ingested(sock)

    def end(self) -> dict[str, float]:
        io1, cpu1, t1, n1 = proc_io(self.pid), cpu_s(self.pid), time.monotonic(), readings_ingested(self.sock)
        polls, wall = max(1, n1 - self.n0), t1 - self.t0
        return {"polls": polls, "polls_per_s": polls / wall, "bytes_per_poll": (io1["write_bytes"] - self.io0["write_bytes"]) / polls,
                "bytes_per_s": (io1["write_bytes"] - self.io0["write_bytes"]) / wall,
                "writes_per_s": (io1["syscw"] - self.io0["syscw"]) / wall, "cpu_pct": 100 * (cpu1 - self.cpu0) / wall,
                "rss_mib": rss_mib(self.pid)}


def ages_ms(view: PlatformView, since_mono: float, until_mono: float) -> list[float]:
    offset = time.time() - time.monotonic()
    with view.lock:
        recs = [r for r in view.records if r.get("cls") == "telemetry" and r["fresh"] and since_mono <= r["received_mono"] < until_mono]
    return [(r["received_mono"] + offset) * 1000 - r["ts_ms"] for r in recs]


def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-sdwear-"))
    broker = Broker(work / "mosq").start()
    sim_port = free_port()
    sim = subprocess.Popen([sys.executable, "-c", "from drivers.modbus.simulator import cli; cli()", "--profile", "hydrant_monitor",
                            "--profiles-dir", str(ROOT / "config" / "profiles"), "--tcp", f"127.0.0.1:{sim_port}",
                            *sum((["--slave", str(u)] for u in range(1, UNITS + 1)), [])],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    sim.stdout.readline()
    px = ProxyThread(broker.port)
    view = PlatformView(broker.url, GW, out=io.StringIO())
    view.start()
    cfg = config(work, sim_port, px.proxy.port, args.period_ms / 1000, args.linger_ms, args.registers, args.telemetry_version,
                 args.commit_interval_s)
    code_root = Path(args.root).resolve()
    daemon = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)], cwd=code_root,
                              env={**os.environ, "PYTHONPATH": str(code_root)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = work / "run" / "control.sock"
    tracer = None
    if args.strace:  # what writes: every pwrite/fsync of the daemon's threads, with times (-tt) and paths (-y)
        tracer = subprocess.Popen(["strace", "-f", "-tt", "-y", "-s", "256", "-e", "trace=write,pwrite64,fsync,fdatasync,rename",
                                   "-o", args.strace, "-p", str(daemon.pid)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(args.warmup_s)
        t_steady = time.monotonic()
        steady = Phase(daemon.pid, sock)
        wire0 = px.proxy.up_bytes
        time.sleep(args.steady_s)
        up = steady.end()
        up["wire_per_reading"] = (px.proxy.up_bytes - wire0) / up["polls"]
        age = ages_ms(view, t_steady, time.monotonic())
        px.mode(Mode.CUT)
        print(f"outage from {time.strftime('%H:%M:%S')}", file=sys.stderr)
        outage = Phase(daemon.pid, sock)
        time.sleep(args.outage_s)
        down = outage.end()
        px.mode(Mode.PASS)
        t_back = time.monotonic()
        store_id = ""
        while time.monotonic() - t_back < 120:
            time.sleep(0.5)
            with view.lock:
                keys = [k for k in view.ledger.seen if k[0] == GW]
            st = call(str(sock), "status", timeout_s=5).result.get("store", {})
            store_id = st.get("store_id", store_id)
            if sum(st.get("depth", {}).values()) == 0 and keys:
                break
        drained_s = time.monotonic() - t_back
        # What the outage cost in all: its own commits plus the drain's deletions (and any checkpoint in it).
        through_drain = (proc_io(daemon.pid)["write_bytes"] - outage.io0["write_bytes"]) / down["polls"]
        with view.lock:
            holes = sum(len(v) for k, v in view.ledger.holes().items() if k[0] == GW)
            dups, total = view.ledger.duplicates, sum(len(v) for k, v in view.ledger.seen.items() if k[0] == GW)
    finally:
        if tracer is not None:
            tracer.terminate()
            tracer.wait(10)
        daemon.terminate()
        daemon.wait(20)
        view.stop()
        sim.terminate()
        broker.stop()
    linger = ("" if args.linger_ms is None else f", linger {args.linger_ms:g} ms") + ("" if args.registers is None else f", {args.registers} values") + (
        "" if args.telemetry_version is None else f", telemetry v{args.telemetry_version}") + (
        "" if args.commit_interval_s is None else f", commit interval {args.commit_interval_s:g} s")
    label = f"{UNITS} units x {args.period_ms:g} ms ({code_root.name}{linger})"
    print(f"{label}: uplink up {args.steady_s:g} s: {up['polls_per_s']:.0f} polls/s, {up['bytes_per_poll']:.1f} B written/poll "
          f"({up['bytes_per_s'] / 1024:.1f} KiB/s), {up['writes_per_s']:.1f} write syscalls/s, telemetry age p50 {pct(age, 50):.0f} ms "
          f"p99 {pct(age, 99):.0f} ms (n={len(age)}), {up['wire_per_reading']:.1f} B on the wire/reading, "
          f"CPU {up['cpu_pct']:.1f} %, RSS {up['rss_mib']:.1f} MiB")
    print(f"{label}: outage {args.outage_s:g} s: {down['bytes_per_poll']:.1f} B written/poll ({down['bytes_per_s'] / 1024:.1f} KiB/s), "
          f"{down['writes_per_s']:.1f} write syscalls/s; drained {drained_s:.1f} s after ({through_drain:.1f} B/outage poll "
          f"from the outage's start to drained); platform: {total} seqs, "
          f"holes {holes} (lost), keyed duplicates {dups}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--period-ms", type=float, default=100.0)
    ap.add_argument("--warmup-s", type=float, default=15.0)  # past the first checkpoint (harden_interval_s)
    ap.add_argument("--steady-s", type=float, default=60.0)
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--linger-ms", type=float, default=None, help="uplink.batch_linger_ms (default: the gateway's own)")
    ap.add_argument("--strace", metavar="FILE", help="also strace the daemon's writes into FILE (finding what writes)")
    ap.add_argument("--registers", type=int, default=None, help="read only the profile's first N registers (values per reading; default 5)")
    ap.add_argument("--telemetry-version", type=int, default=None, choices=(1, 2), help="uplink.telemetry_version (default: the gateway's own)")
    ap.add_argument("--commit-interval-s", type=float, default=None, help="store.commit_interval_s (default: the gateway's own)")
    ap.add_argument("--root", default=str(ROOT), help="checkout whose gateway runs (the script itself stays this one)")
    run(ap.parse_args())
