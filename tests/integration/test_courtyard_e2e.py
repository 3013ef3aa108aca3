"""The demo scenario end to end, shortened: the simulated courtyard (real ptys, real simulators), the real
daemon as a subprocess, a real mosquitto and a platform subscriber.

A LoRa smoke frame -> sounder coil on the relay box and an SMS at the modem; the uplink cut at the fault
proxy while a gas alarm is raised (SMS still sent, records queued); the link back -> everything delivered
once per seq, no hole, alarms ahead of the telemetry queued with them; a signed `ack_alarm` from the
platform -> the sounder goes off.
"""

import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.cli.common import locate
from gateway.control.client import call
from gateway.simulate.courtyard import Courtyard, load
from gateway.simulate.platform import PlatformView
from gateway.simulate.proxy import Mode
from gateway.uplink.commands import sign_command
from tests.support.wait import async_wait_for

ROOT = Path(__file__).resolve().parents[2]


def _courtyard_file(tmp_path: Path) -> Path:
    """The demo courtyard without its timed scenario (the test triggers steps itself)."""
    text = (ROOT / "config/demo/courtyard.toml").read_text()
    text = text.split("# ---- The demo's scenario")[0]
    text = text.replace('profiles_dir = "../profiles"', f'profiles_dir = "{ROOT / "config/profiles"}"')
    p = tmp_path / "courtyard.toml"
    p.write_text(text)
    return p


def _queued_alarms(gateway_toml: Path) -> int:
    """Alarm rows in the daemon's outbox, asked over its control socket."""
    resp = call(locate(str(gateway_toml)).socket, "status")
    assert resp.ok, resp
    return int(resp.result["store"]["depth"]["alarm"])


@pytest.mark.slow  # over 5 s (issue 16)
async def test_smoke_alarm_sounder_sms_outage_delivery_and_signed_ack(tmp_path, broker):
    spec_path = _courtyard_file(tmp_path)
    out = tmp_path / "gateway.toml"
    cy = Courtyard(load(spec_path), spec_path, out, broker.url, time_scale=1.0)
    await cy.start()
    view = PlatformView(broker.url, "gw-xinhong-03")
    view.start()
    daemon = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(out)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    relay_unit = 10
    sim_rtu = cy.sims["modbus_rtu"]
    try:
        await async_wait_for(lambda: view.telemetry_count > 10, 30, what="telemetry at the platform")

        # 1. Smoke in flat 2-1-301 (an elderly resident living alone).
        await cy.trigger("smoke", "smoke-2-1-301")
        await async_wait_for(lambda: sim_rtu.output(relay_unit, "sounder"), 10, what="sounder on")
        await async_wait_for(lambda: any("2栋1单元301室" in text and "烟感报警" in text for _, text in cy.sims["sms"].texts()), 20, what="SMS")
        alarms = lambda: [r for r in view.records if r.get("cls") == "alarm" and r.get("kind") == "alarm.raised"]
        await async_wait_for(lambda: alarms(), 10, what="alarm record at the platform")
        smoke_alarm = alarms()[0]
        assert smoke_alarm["device"] == "smoke-2-1-301"
        # The district fire centre (GB/T 26875.3) got a part-state frame with the fire-alarm bit (b1).
        from gateway.uplink.gb26875.objects import TypeFlag

        centre = cy.sims["gb26875"]
        fire_states = lambda: [o for r in centre.received if r.flag == TypeFlag.PART_STATE for o in r.objects if o.state & 0x02]
        await async_wait_for(fire_states, 10, what="part state with the fire-alarm bit at the fire centre")

        # 2. Uplink cut; a gas alarm during the outage still sounds and texts; records queue.
        cy.proxy.set_mode(Mode.CUT)
        seen_before = len(view.records)
        alarms_queued = _queued_alarms(out)
        # A kitchen in another flat: its relative has had no SMS yet, so the per-recipient interval
        # (which defers the guard's and grid worker's second SMS by 30 s) does not hold this one back.
        gas = next(d for d in cy.spec.lora.devices if d.profile == "lora_gas_v1" and d.contacts != ["rel-2-1-301"])
        await cy.trigger("gas", gas.id)
        await async_wait_for(lambda: any("燃气泄漏" in text for _, text in cy.sims["sms"].texts()), 30,
                             what="SMS for the gas alarm while the uplink is down")
        # The daemon holds the gas alarm in its outbox (the evidence that it tried): nothing got through.
        await async_wait_for(lambda: _queued_alarms(out) > alarms_queued, 15, what="gas alarm queued in the outbox")
        assert len(view.records) == seen_before
        t_back = time.monotonic()
        cy.proxy.set_mode(Mode.PASS)
        await async_wait_for(lambda: len(alarms()) >= 2, 20, what="gas alarm delivered after the outage")
        backlog_s = time.monotonic() - t_back

        # 3. The platform acknowledges the smoke alarm with a signed command: the sounder stops.
        creds = tomllib.loads(Path(str(out).replace(".toml", ".credentials.toml")).read_text())
        key = creds["command_keys"]["demo-ops"]
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        for alarm in alarms():
            payload = sign_command("demo-ops", key, "gw-xinhong-03", "ack_alarm", {"alarm_id": alarm["body"]["alarm_id"]})
            pub.publish("cg/v1/gw-xinhong-03/cmd", payload, qos=1).wait_for_publish(5)
        await async_wait_for(lambda: not sim_rtu.output(relay_unit, "sounder"), 15, what="sounder off after the signed ack")
        pub.loop_stop()
        pub.disconnect()

        # 4. An NB-IoT detector's report relayed by the platform (signed like a command) is an event too.
        from drivers.codecs import nbiot_smoke

        nb = next(d for d in cy.spec.nbiot.devices)
        body = {"imei": nb.address, "payload_hex": nbiot_smoke.encode(nb.address, nbiot_smoke.ALARM, 4242, flags=1).hex(),
                "platform_time": int(time.time())}
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        pub.publish("cg/v1/gw-xinhong-03/relay", sign_command("demo-ops", key, "gw-xinhong-03", "relay", body), qos=1).wait_for_publish(5)
        relayed = lambda: [r for r in view.records if r.get("cls") == "event" and r.get("device") == nb.id
                           and r.get("body", {}).get("via") == "platform-relay"]
        await async_wait_for(relayed, 15, what="relayed NB-IoT report at the platform")
        pub.loop_stop()
        pub.disconnect()

        # 5. The platform's ledger: every record once per seq, no hole, alarms before telemetry queued with them.
        # Alarms overtake the telemetry backlog, so holes close as the backlog drains: wait for that.
        await async_wait_for(lambda: view.ledger.holes() == {}, 20, what="no hole in the platform's ledger")
        seqs = [r["seq"] for r in view.records if r["fresh"]]
        assert len(seqs) == len(set(seqs))
        after_cut = view.records[seen_before:]
        first_tel = next(i for i, r in enumerate(after_cut) if r.get("cls") == "telemetry")
        gas_alarm_pos = next(i for i, r in enumerate(after_cut) if r.get("cls") == "alarm")
        assert gas_alarm_pos < first_tel, "an alarm queued during the outage was delivered after telemetry"
        assert backlog_s < 10
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            rc = daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            rc = -9
        view.stop()
        await cy.stop()
    assert rc == 0, daemon.stderr.read().decode()[-3000:]
