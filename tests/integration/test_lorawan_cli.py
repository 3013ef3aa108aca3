"""`gateway lorawan devices` against a running daemon and `gateway lorawan listen` with the daemon stopped,
each hearing the GWMP forwarder simulator over real UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys

import pytest

from drivers.lorawan.simulator import LorawanSimulator
from tests.integration.lorawan_rig import APP_SKEY, NWK_SKEY, SMOKE_ADDR, free_udp_port, sim_devices
from tests.support.daemon import PROFILES, ROOT, DaemonProc, SimThread, cli_env, write_config
from tests.support.wait import async_wait_for, wait_for


def lorawan_config(tmp_path, bus: str, port: int):
    creds = tmp_path / "credentials.toml"
    creds.write_text(f'[lora_keys]\n"smoke-2-401" = "{NWK_SKEY}:{APP_SKEY}"\n')
    creds.chmod(0o600)
    extra = f"""
[ports.lw]
driver = "lorawan_gwmp"
bind_port = {port}
forwarder_timeout_s = 20

[[devices]]
id = "smoke-2-401"
profile = "milesight_gs524n"
port = "lw"
address = "{SMOKE_ADDR}"

[[rules]]
kind = "event"
id = "smoke-alarm"
severity = "critical"
types = ["smoke"]
events = ["alarm"]
codes = ["smoke"]
"""
    config = write_config(tmp_path, bus, extra=extra,
                          uplink=f'broker_url = "mqtt://127.0.0.1:1"\ncredentials_file = "{creds}"')
    shutil.copy(PROFILES / "milesight_gs524n.toml", tmp_path / "profiles")
    return config


def run_cli(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env=cli_env(config),
                          capture_output=True, text=True, timeout=60)


async def send_until(sim: LorawanSimulator, done, reason: str = "alarm", tries: int = 100) -> None:
    for _ in range(tries):
        sim.report("smoke-2-401", reason)
        try:
            await async_wait_for(done, timeout_s=0.3)
            return
        except TimeoutError:
            continue
    raise TimeoutError("the gateway never heard the simulator")


@pytest.mark.slow
def test_devices_shows_the_abp_device_with_its_counter_and_signal(tmp_path):
    port = free_udp_port()
    with SimThread(str(tmp_path / "bus")) as bus:
        config = lorawan_config(tmp_path, bus.path, port)
        daemon = DaemonProc(config, tmp_path / "run" / "control.sock").start()
        try:
            async def drive() -> None:
                sim = LorawanSimulator(("127.0.0.1", port), keepalive_s=0.5)
                sim.add(sim_devices()[0])
                await sim.start()
                try:
                    def heard() -> bool:
                        out = run_cli(config, "lorawan", "devices", "--json")
                        return out.returncode == 0 and json.loads(out.stdout)["lw"]["devices"]["smoke-2-401"]["frames"] > 0
                    await send_until(sim, heard)
                finally:
                    await sim.stop()
            asyncio.run(drive())
            detail = json.loads(run_cli(config, "lorawan", "devices", "--json").stdout)["lw"]
            dev = detail["devices"]["smoke-2-401"]
            assert dev["joined"] and dev["activation"] == "abp" and dev["dev_addr"] == SMOKE_ADDR and dev["last_rssi_dbm"] == -95
            assert list(detail["forwarders"]) == ["0016c001ff10a235"]
            human = run_cli(config, "lorawan", "devices")
            assert human.returncode == 0 and "smoke-2-401" in human.stdout and "abp" in human.stdout
            # the smoke alarm reached the rules like any other driver's: it is in the daemon's alarm list
            alarms = json.loads(run_cli(config, "alarms", "--json").stdout)
            assert any(a["device_id"] == "smoke-2-401" for a in alarms)
        finally:
            daemon.stop()


@pytest.mark.slow
def test_listen_prints_each_frame_with_fcnt_and_rssi(tmp_path):
    port = free_udp_port()
    config = lorawan_config(tmp_path, str(tmp_path / "no-bus"), port)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "lorawan", "listen", "--seconds", "20", "--json"], cwd=ROOT,
                            env={**cli_env(config), "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = bytearray()
    try:
        os.set_blocking(proc.stdout.fileno(), False)

        def lines() -> list[dict]:
            complete = out[:out.rfind(b"\n") + 1].decode()
            return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]

        def read() -> bool:
            try:
                out.extend(os.read(proc.stdout.fileno(), 65536))
            except BlockingIOError:
                pass
            return any(r.get("kind") == "data" for r in lines())

        async def drive() -> None:
            sim = LorawanSimulator(("127.0.0.1", port), keepalive_s=0.5)
            sim.add(sim_devices()[0])
            await sim.start()
            try:
                await send_until(sim, read, "heartbeat")
            finally:
                await sim.stop()
        asyncio.run(drive())
    finally:
        proc.terminate()
        proc.wait(10)
    row = next(r for r in lines() if r["kind"] == "data")
    assert row["device_id"] == "smoke-2-401" and row["rssi_dbm"] == -95 and row["fcnt"] is not None and row["reason"] is None
    # Beside the original keys, the frame as the daemon's lora_listen reports it (additive):
    assert row["verdict"] == "accepted" and row["frame"].endswith("_up") and len(row["source"]) == 8
    assert row["freq_mhz"] and row["datr"].startswith("SF")
    wait_for(lambda: proc.poll() is not None)
