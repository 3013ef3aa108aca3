"""The walk test against the simulated courtyard (real ptys and simulators, the real daemon, mosquitto and
a platform subscriber): `gateway commission walk --json` runs while the simulator presses every device's
test button; every device is ticked with its signal, no press sends an SMS or reaches the platform as an
alarm (they arrive as `event.test` records), and a real smoke alarm during the walk still raises and texts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from gateway.control.client import DaemonUnavailable, call
from gateway.simulate.courtyard import Courtyard, load
from gateway.simulate.platform import PlatformView
from tests.integration.test_courtyard_e2e import ROOT, _courtyard_file
from tests.support.wait import async_wait_for


def _answers(sock: str) -> bool:
    try:
        return call(sock, "status", timeout_s=2).ok
    except DaemonUnavailable:
        return False


@pytest.mark.slow
async def test_walk_ticks_every_device_and_keeps_presses_off_sms_and_platform(tmp_path, broker):
    spec_path = _courtyard_file(tmp_path)
    out = tmp_path / "gateway.toml"
    cy = Courtyard(load(spec_path), spec_path, out, broker.url, time_scale=1.0)
    await cy.start()
    view = PlatformView(broker.url, "gw-xinhong-03")
    view.start()
    sock = str(cy.workdir / "control.sock")
    daemon = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(out)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    walker = None
    try:
        await async_wait_for(lambda: _answers(sock), 30, what="daemon control socket")
        await async_wait_for(lambda: view.telemetry_count > 0, 30, what="uplink delivering")
        walker = subprocess.Popen([sys.executable, "-m", "gateway", "commission", "walk", "--json", "--duration", "10m",
                                   "--socket", sock], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        await async_wait_for(lambda: call(sock, "walk_status").ok, 15, what="walk started")
        # A real fire in a flat the installer has not reached yet: a smoke detector's alarm stays real.
        await cy.trigger("smoke", "smoke-3-2-502")
        await async_wait_for(lambda: [a for a in call(sock, "alarms").result if a["device_id"] == "smoke-3-2-502"], 15,
                             what="the real smoke alarm raised during the walk")
        await async_wait_for(lambda: any("3栋2单元502室" in t for _, t in cy.sims["sms"].texts()), 20, what="its SMS")
        await cy.trigger("clear", "smoke-3-2-502")
        devices = sorted(cy.types)
        for dev in devices:  # the installer's round: one press per device, a moment apart
            await cy.trigger("test_button", dev)
            await asyncio.sleep(0.05)
        await async_wait_for(lambda: walker.poll() is not None, 60, what="walk CLI finished (every device ticked)")
        report = json.loads(walker.stdout.read())
        assert walker.returncode == 0, walker.stderr.read()
        assert (report["done"], report["left"], report["total"]) == (len(devices), 0, len(devices))
        rows = {d["id"]: d for b in report["buildings"] for f in b["flats"] for d in f["devices"]}
        assert all(r["ticked"] for r in rows.values())
        assert rows["smoke-1-1-202"]["how"] == "test_button" and rows["smoke-1-1-202"]["signal"].get("rssi_dbm") is not None
        assert rows["flow-riser-2"]["how"] == "alarm_as_test" and rows["hydrant-1"]["how"] == "answered"
        assert report["tagged_as_test"] >= 2  # the flow switch and the manhole cover report their test as an alarm
        # None of the presses was a real alarm: the only alarm records, SMS and active alarm are the real fire's.
        await async_wait_for(lambda: sum(1 for r in view.records if r.get("kind") == "event.test") >= 30, 20,
                             what="test events at the platform")
        assert {r.get("device") for r in view.records if r.get("cls") == "alarm"} == {"smoke-3-2-502"}
        assert all("3栋2单元502室" in text for _, text in cy.sims["sms"].texts())
        assert {a["device_id"] for a in call(sock, "alarms").result} <= {"smoke-3-2-502"}
        await _every_json_parses(sock, str(out))
    finally:
        for proc in (walker, daemon):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        view.stop()
        await cy.stop()


async def _every_json_parses(sock: str, config: str) -> None:
    """Every read command's --json against this daemon: one JSON document on stdout, the documented exit code.
    The commands only read (or are refused), so they run side by side: each one is a Python start-up."""
    def gw(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gateway", *args, "--config", config, "--socket", sock], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    cases = [(("status",), 0), (("devices",), 0), (("devices", "smoke-1-1-202"), 0), (("devices", "--offline"), 0),
             (("alarms",), 0), (("alarms", "--since", "1h"), 0), (("queue",), 0), (("poll", "hydrant-1"), 0),
             (("commission", "walk", "--status"), 0), (("selftest",), 1)]  # selftest: the demo broker is not TLS
    human = [("devices",), ("devices", "smoke-2-1-301"), ("commission", "walk", "--status")]
    wide, prefix, ambiguous = ("devices", "--wide"), ("devices", "nbsmoke-2-2-6", "--json"), ("devices", "smoke-1")
    unknown, no_alarm, usage = ("devices", "no-such-device"), ("alarms", "ack", "abcd"), ("devices", "--type", "toaster")
    runs = [(*args, "--json") for args, _ in cases] + human + [wide, prefix, ambiguous, unknown, no_alarm, usage]
    res = dict(zip(runs, await asyncio.gather(*(asyncio.to_thread(gw, *args) for args in runs)), strict=True))
    for args, code in cases:
        out = res[(*args, "--json")]
        assert out.returncode == code, (args, out.returncode, out.stderr)
        doc = json.loads(out.stdout)
        assert doc is not None, args
        if args == ("devices", "smoke-1-1-202"):
            assert doc["id"] == "smoke-1-1-202" and doc["recent"] and doc["signal_history"][0]["rssi_dbm"] < 0
    assert {c["name"]: c["status"] for c in json.loads(res[("selftest", "--json")].stdout)["checks"]}[
        "device smoke-1-1-202"] == "pass"
    from gateway.cli.render import _width

    for args in human:
        assert res[args].returncode == 0, (args, res[args].stderr)
        assert max(_width(line) for line in res[args].stdout.splitlines()) <= 80, (args, res[args].stdout)
    assert "LOCATION" in res[wide].stdout and "2栋1单元301" in res[wide].stdout
    assert res[prefix].returncode == 0 and json.loads(res[prefix].stdout)["id"] == "nbsmoke-2-2-602"
    assert res[ambiguous].returncode == 1 and "ambiguous_device" in res[ambiguous].stderr
    assert res[unknown].returncode == 1 and "unknown_device" in res[unknown].stderr
    assert res[no_alarm].returncode == 1 and "unknown_alarm" in res[no_alarm].stderr
    assert res[usage].returncode == 2
