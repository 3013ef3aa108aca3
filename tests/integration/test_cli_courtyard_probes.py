"""The installer probes against the simulated courtyard, daemon stopped: Modbus TCP scan of the pump
station matched to the config, `lora listen` naming and decoding the configured sensors, `modem info` in
the EC200's own dialect with clean JSON on stdout, `modem at` exiting 1 on ERROR, and exit codes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from gateway.simulate.courtyard import Courtyard, load
from tests.integration.test_courtyard_e2e import ROOT, _courtyard_file


def gw(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


async def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(gw, *args, timeout=timeout)


async def test_probes_on_the_simulated_courtyard(tmp_path, broker):
    spec_path = _courtyard_file(tmp_path)
    out = tmp_path / "gateway.toml"
    cy = Courtyard(load(spec_path), spec_path, out, broker.url, time_scale=1.0)
    await cy.start()
    cfg = ["--config", str(out), "--socket", str(tmp_path / "no-daemon.sock")]
    try:
        scan = await run("modbus", "scan", f"127.0.0.1:{cy.tcp_port}", "--ids", "1-3", "--timeout", "0.2", "--json", *cfg)
        assert scan.returncode == 0, scan.stderr
        doc = json.loads(scan.stdout)
        assert doc["found"] == [1] and doc["devices"] == [{"unit": 1, "device_id": "pump-1"}] and doc["missing"] == []

        listen = asyncio.create_task(run("lora", "listen", cy.tty("lora"), "--seconds", "6", "--json", *cfg))
        await asyncio.sleep(2.5)  # the probe opens the port
        for _ in range(3):
            await cy.trigger("smoke", "smoke-2-1-301")
            await cy.trigger("water_flow", "flow-riser-2")
            await asyncio.sleep(0.3)
        res = await listen
        assert res.returncode == 0, res.stderr
        frames = [json.loads(line) for line in res.stdout.splitlines()]
        by_name = {f["name"]: f for f in frames}
        assert {"smoke-2-1-301", "flow-riser-2"} <= set(by_name)
        smoke = by_name["smoke-2-1-301"]
        assert smoke["verified"] is True and any(i.get("kind") == "alarm" and i.get("code") == "smoke" for i in smoke["decoded"])

        info = await run("modem", "info", cy.tty("sms"), "--json", *cfg)
        assert info.returncode == 0, info.stderr + info.stdout
        facts = json.loads(info.stdout)  # nothing but the JSON on stdout
        assert facts["modem_type"] == "ec200" and facts["imei"] and facts["iccid"]
        bad = await run("modem", "at", cy.tty("sms"), "AT+FOO", *cfg)
        assert bad.returncode == 1, bad.stdout + bad.stderr

        from gateway.simulate.cli import _serve_trigger

        sock = str(tmp_path / "sim.sock")
        server = await asyncio.start_unix_server(lambda r, w: _serve_trigger(cy, r, w), path=sock)
        try:
            typo = await run("simulate", "trigger", "smok", "--socket", sock)
            assert typo.returncode == 2 and "unknown scenario 'smok'" in typo.stderr
            wrong = await run("simulate", "trigger", "gas", "hydrant-1", "--socket", sock)
            assert wrong.returncode == 1 and "does not apply" in wrong.stderr
        finally:
            server.close()
        gone = await run("simulate", "trigger", "smoke", "--socket", str(tmp_path / "nosim.sock"))
        assert gone.returncode == 3  # no courtyard listening there: unreachable
    finally:
        await cy.stop()
