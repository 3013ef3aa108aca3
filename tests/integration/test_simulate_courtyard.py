"""gateway/simulate on its own, without the daemon: the courtyard file -> simulators on real ptys and a
gateway config that loads; every trigger's effect on the simulator it targets (read back from the wire
or the simulator's state); the watcher's log words (`sounder_on`, `strobe_on`, `sms_received`, ...,
a stable interface per CLARIFICATIONS "Turn 2"); the trigger socket's JSON line; the demo log view."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import stat
import tomllib
from pathlib import Path

import pytest
import serial
import structlog
from click.testing import CliRunner

from drivers.cellular.channel import AtChannel
from drivers.cellular.commands import Timeouts
from drivers.cellular.pdu import encode_submit
from drivers.codecs import CodecMeta, nbiot_smoke
from drivers.codecs.smoke import decode as smoke_decode
from drivers.lora.frame import Deframer, Frame
from gateway.config import load_config
from gateway.model import Stamp
from gateway.simulate import logview
from gateway.simulate.cli import _serve_trigger, simulate
from gateway.simulate.courtyard import Courtyard, load
from gateway.simulate.proxy import Mode
from tests.support.wait import async_wait_for

ROOT = Path(__file__).resolve().parents[2]
COURTYARD = f"""
gateway_id = "gw-sim-test-01"
community = "测试社区"
courtyard = "1号院"
profiles_dir = "{ROOT / 'config/profiles'}"

[[contacts]]
id = "guard"
name = "门卫室"
role = "guard_room"
phone = "+8613800000001"

[modbus_rtu]
poll_period_s = 1.0
[[modbus_rtu.devices]]
id = "hydrant-1"
profile = "hydrant_monitor"
address = 1
building = "1"
[[modbus_rtu.devices]]
id = "guard-relay"
profile = "guard_relay_box"
address = 10

[lora]
[[lora.devices]]
id = "smoke-1-1-202"
profile = "lora_smoke_v1"
address = 439025665
building = "1"
unit = "1"
room = "202"
resident = "elderly_alone"
contacts = ["guard"]

[nbiot]
[[nbiot.devices]]
id = "nbsmoke-1-1-101"
profile = "nbiot_smoke_udp"
address = "861234560001003"
building = "1"
"""


@contextlib.asynccontextmanager
async def courtyard(tmp_path: Path):
    spec_path = tmp_path / "courtyard.toml"
    spec_path.write_text(COURTYARD)
    cy = Courtyard(load(spec_path), spec_path, tmp_path / "gateway.toml", "mqtt://127.0.0.1:1", time_scale=1.0)
    cy.rng.seed(7)
    await cy.start()
    try:
        yield cy
    finally:
        await asyncio.wait_for(cy.stop(), 15)


def notes(cy: Courtyard, what: str) -> list[dict]:
    return [e for e in cy.events if e["what"] == what]


async def test_the_generated_gateway_config_loads_and_points_at_every_simulator(tmp_path):
    async with courtyard(tmp_path) as cy:
        cfg = load_config(cy.out)  # the real loader: the daemon would start on it unmodified
        assert cfg.identity.gateway_id == "gw-sim-test-01"
        assert {name: p[0] for name, p in cfg.ports.items()} == {
            "rs485": "modbus_rtu", "lora": "lora_e22", "nbiot": "nbiot_bc95", "sms": "sms_ec200"}
        assert {d.id for d in cfg.devices} == {"hydrant-1", "guard-relay", "smoke-1-1-202", "nbsmoke-1-1-101"}
        for name in ("rs485", "lora", "nbiot", "sms"):
            assert os.path.exists(cy.tty(name)), name  # a pty the daemon can open
        uplink = tomllib.loads(cy.out.read_text())["uplink"]
        assert uplink["broker_url"] == f"mqtt://127.0.0.1:{cy.proxy.port}"  # through the fault proxy
        creds = Path(uplink["credentials_file"])
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600  # LoRa keys and the command key are secrets
        secrets = tomllib.loads(creds.read_text())
        assert set(secrets["lora_keys"]) == {"smoke-1-1-202"} and len(secrets["command_keys"]["demo-ops"]) == 64


async def test_modbus_triggers_change_the_slave_and_silent_lasts_its_duration(tmp_path):
    async with courtyard(tmp_path) as cy:
        sim = cy.sims["modbus_rtu"]
        await cy.trigger("hydrant_opened", "hydrant-1")
        assert sim.slaves[1].value("pressure_mpa") == pytest.approx(0.06)
        await cy.trigger("clear", "hydrant-1")
        assert sim.slaves[1].value("pressure_mpa") == pytest.approx(0.32)
        await cy.trigger("silent", "hydrant-1", duration_s=0.2)
        assert sim.slaves[1].fault.silent
        await async_wait_for(lambda: not sim.slaves[1].fault.silent, 5, what="silence over after its duration")
        assert [e["scenario"] for e in notes(cy, "triggered")] == ["hydrant_opened", "clear", "silent"]


async def test_a_lora_smoke_trigger_puts_a_keyed_alarm_frame_on_the_wire(tmp_path):
    async with courtyard(tmp_path) as cy:
        key = bytes.fromhex(cy.lora_keys["smoke-1-1-202"])
        deframer, frames = Deframer({439025665: key}, rssi=True), []
        with serial.Serial(cy.tty("lora"), 9600, timeout=0) as port:  # the gateway's side of the module
            await cy.trigger("smoke", "smoke-1-1-202")

            def alarm_seen() -> bool:
                frames.extend(f for f in deframer.feed(port.read(4096)) if isinstance(f, Frame))
                return any(f.type.name == "REPORT" and f.payload[0] == 1 for f in frames)

            await async_wait_for(alarm_seen, 10, what="alarm frame from the LoRa module")
        report = next(f for f in frames if f.payload[0] == 1)
        items = smoke_decode(report.payload, CodecMeta("smoke-1-1-202", Stamp(0.0, "b", 0, True), "lora"))
        assert (items[1].kind, items[1].code) == ("alarm", "smoke") and report.verified


async def test_an_nbiot_smoke_trigger_makes_the_detector_send_an_alarm(tmp_path):
    async with courtyard(tmp_path) as cy:
        sensor = cy.nbiot_sensors["nbsmoke-1-1-101"]
        await cy.trigger("smoke", "nbsmoke-1-1-101")
        await async_wait_for(lambda: sensor.sent, 5, what="datagram on the air")
        assert nbiot_smoke.header(sensor.sent[-1]).msg_type == nbiot_smoke.ALARM


async def test_trigger_refusals_name_the_problem(tmp_path):
    async with courtyard(tmp_path) as cy:
        with pytest.raises(ValueError, match="unknown scenario"):
            await cy.trigger("earthquake")
        with pytest.raises(KeyError, match="unknown device"):
            await cy.trigger("smoke", "smoke-9-9-999")
        with pytest.raises(ValueError, match="does not apply"):
            await cy.trigger("pump_fault", "smoke-1-1-202")
        with pytest.raises(ValueError, match="no device of type"):
            await cy.trigger("gas")  # this courtyard has no gas detector
        picked = await cy.trigger("smoke")  # no device named: one of the right type
        assert picked["device"] in {"smoke-1-1-202", "nbsmoke-1-1-101"}


async def test_uplink_outage_cuts_the_proxy_and_restores_it(tmp_path):
    async with courtyard(tmp_path) as cy:
        await cy.trigger("uplink_outage", duration_s=0.2)
        assert cy.proxy.mode == Mode.CUT
        await async_wait_for(lambda: cy.proxy.mode == Mode.PASS, 5, what="uplink back")
        assert [e["what"] for e in cy.events if e["what"].startswith("uplink_outage")] == [
            "uplink_outage_started", "uplink_outage_ended"]


async def test_the_watcher_says_sounder_on_strobe_on_and_sms_received(tmp_path, capsys):
    async with courtyard(tmp_path) as cy:
        relay = cy.sims["modbus_rtu"].slaves[10]
        relay.tables["c"][relay.profile.outputs["sounder"].address] = 1  # as the daemon's FC05 write would
        relay.tables["c"][relay.profile.outputs["strobe"].address] = 1
        await async_wait_for(lambda: notes(cy, "sounder_on") and notes(cy, "strobe_on"), 5, what="sounder_on, strobe_on")
        relay.tables["c"][relay.profile.outputs["sounder"].address] = 0
        await async_wait_for(lambda: notes(cy, "sounder_off"), 5, what="sounder_off")
        ch = AtChannel(structlog.get_logger("test"), Timeouts(sms_s=5.0), lambda u: None, lambda b: None)
        await ch.open(cy.tty("sms"), 115200)
        try:
            for part in encode_submit("+8613800000001", "1号楼 烟感报警"):
                await ch.command_with_payload(f"AT+CMGS={part.tpdu_octets}", part.hex.encode())
        finally:
            ch.close()
        await async_wait_for(lambda: notes(cy, "sms_received"), 5, what="sms_received")
        assert notes(cy, "sms_received")[0] == {"what": "sms_received", "to": "+8613800000001", "text": "1号楼 烟感报警"}
        out = capsys.readouterr().out
        for word in ("sim: sounder_on device=guard-relay", "sim: strobe_on device=guard-relay", "sim: sms_received to=+8613800000001"):
            assert word in out  # the words people and scripts read on stdout


async def test_the_trigger_socket_answers_one_json_line(tmp_path):
    async with courtyard(tmp_path) as cy:
        path = str(tmp_path / "trigger.sock")
        server = await asyncio.start_unix_server(lambda r, w: _serve_trigger(cy, r, w), path=path)
        try:
            async def ask(line: bytes) -> dict:
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(line)
                await writer.drain()
                reply = json.loads(await reader.readline())
                writer.close()
                return reply

            assert await ask(b'{"scenario": "smoke", "device": "nbsmoke-1-1-101"}\n') == {
                "ok": True, "trigger": "smoke", "device": "nbsmoke-1-1-101"}
            assert (await ask(b'{"scenario": "flood"}\n'))["ok"] is False
            assert (await ask(b"not json\n"))["ok"] is False
            result = await asyncio.to_thread(CliRunner().invoke, simulate, ["trigger", "clear", "hydrant-1", "--socket", path])
            assert result.exit_code == 0 and "trigger=clear device=hydrant-1" in result.output
            refused = await asyncio.to_thread(CliRunner().invoke, simulate, ["trigger", "flood", "--socket", path])
            assert refused.exit_code == 2 and "unknown scenario" in refused.output  # a usage error (README exit codes)
        finally:
            server.close()
            await server.wait_closed()
    nobody = CliRunner().invoke(simulate, ["trigger", "smoke", "--socket", str(tmp_path / "none.sock")])
    assert nobody.exit_code == 3 and "no simulated courtyard" in nobody.output


def test_simulate_without_courtyard_or_config_is_a_usage_error():
    result = CliRunner().invoke(simulate, ["--courtyard", __file__])
    assert result.exit_code == 2 and "--gateway-config" in result.output


def test_log_view_keeps_the_demo_facts_and_errors_and_drops_the_rest(monkeypatch, capsys):
    lines = [
        {"event": "alarm_raised", "alarm_id": "a1", "rule": "smoke", "device_id": "smoke-1", "severity": "critical", "seq": 7,
         "gateway_id": "gw"},
        {"event": "reading_stored", "device_id": "hydrant-1"},
        {"event": "store_write_failed", "level": "error", "error": "disk I/O error"},
        {"event": "output_written", "device_id": "guard-relay", "target": "sounder", "value": True, "reason": "alarm"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\nnot json at all\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    logview.main([])  # not pytest's own argv
    out = [line.split("  ", 1)[1].strip() for line in capsys.readouterr().out.splitlines()]  # past the local time
    assert out == [  # the demo's narrative: what a person notices, errors kept, routine lines dropped
        "gateway    ALARM smoke (critical) at smoke-1, id a1",
        "gateway    gateway error: store_write_failed disk I/O error",
        "gateway    guard-room sounder ON",
    ]
