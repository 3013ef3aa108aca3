"""Installer probes with the daemon stopped: `modbus scan` finds exactly the simulated slave ids on a
pty bus, `read` decodes, `write` switches a real (simulated) coil; radios say when not built in."""

from __future__ import annotations

import json
import struct

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli
from gateway.cli.probes import parse_ids
from tests.support.daemon import SimThread


def gateway(tmp_path, *args: str):
    # A config path that does not exist: no daemon to ask, default socket path absent.
    return CliRunner().invoke(cli, [*args], env={"COURTYARD_CONFIG": str(tmp_path / "none.toml"),
                                                 "COURTYARD_SOCKET": str(tmp_path / "none.sock")})


@pytest.fixture
def bus(tmp_path):
    path = str(tmp_path / "bus")
    with SimThread(path, {1: ("h1", "hydrant_monitor"), 7: ("h7", "hydrant_monitor"), 10: ("relay", "guard_relay_box")}) as sim:
        yield path, sim.sim


def test_scan_finds_exactly_the_simulated_ids(tmp_path, bus):
    path, _ = bus
    res = gateway(tmp_path, "modbus", "scan", path, "--ids", "1-12", "--timeout", "0.1", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {k: out[k] for k in ("port", "baud", "tried", "found")} == {"port": path, "baud": 9600, "tried": 12, "found": [1, 7, 10]}
    assert out["devices"] == [{"unit": 1, "device_id": None}, {"unit": 7, "device_id": None}, {"unit": 10, "device_id": None}]
    # progress goes to stderr while scanning, the answer to stdout
    assert "unit 7 answered" in res.stderr
    human = gateway(tmp_path, "modbus", "scan", path, "--ids", "5-8", "--timeout", "0.1")
    assert human.exit_code == 0 and "1 of 4 ids answered: 7" in human.stdout


def test_read_decodes_registers_and_coils(tmp_path, bus):
    path, sim = bus
    sim.set_value(1, "pressure_mpa", 0.45)
    res = gateway(tmp_path, "modbus", "read", path, "1", "0", "--count", "2", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["function"] == 3 and [v["address"] for v in out["values"]] == [0, 1]
    coil = gateway(tmp_path, "modbus", "read", path, "10", "0", "--type", "bool", "--json")
    assert json.loads(coil.stdout)["values"][0]["value"] is False


def test_float32_read_uses_both_registers_in_the_given_word_order(tmp_path, bus):
    path, _ = bus
    for order in ("big", "little"):
        res = gateway(tmp_path, "modbus", "read", path, "1", "0", "--type", "float32", "--word-order", order, "--json")
        assert res.exit_code == 0, res.output
        [v] = json.loads(res.stdout)["values"]
        words = [int(w, 16) for w in v["raw"].split()]
        assert len(words) == 2
        first, second = words if order == "big" else words[::-1]
        assert v["value"] == struct.unpack(">f", struct.pack(">HH", first, second))[0]


def test_write_switches_the_sounder_coil(tmp_path, bus):
    path, sim = bus
    res = gateway(tmp_path, "modbus", "write", path, "10", "0", "on", "--coil")
    assert res.exit_code == 0, res.output
    assert sim.output(10, "sounder")
    assert gateway(tmp_path, "modbus", "write", path, "10", "0", "off", "--coil").exit_code == 0
    assert not sim.output(10, "sounder")


def test_a_silent_slave_is_unreachable_exit_3(tmp_path, bus):
    path, _ = bus
    res = gateway(tmp_path, "modbus", "read", path, "99", "0")
    assert res.exit_code == 3 and "no answer" in res.stderr


def test_a_missing_port_is_unreachable_exit_3(tmp_path):
    res = gateway(tmp_path, "modbus", "scan", str(tmp_path / "ttyUSB9"), "--ids", "1")
    assert res.exit_code == 3 and "cannot open" in res.stderr


def test_a_port_held_by_another_process_is_refused(tmp_path, bus):
    import serial

    path, _ = bus
    with serial.Serial(path, exclusive=True):
        res = gateway(tmp_path, "modbus", "scan", path, "--ids", "1")
    assert res.exit_code == 3 and "another process has the port open" in res.stderr


def test_bad_ids_are_a_usage_error():
    assert parse_ids("1-3,10") == [1, 2, 3, 10]
    for bad in ("0-5", "200-300", "x", "5-1"):
        with pytest.raises(Exception):
            parse_ids(bad)
    assert CliRunner().invoke(cli, ["modbus", "scan", "/dev/null", "--ids", "0-5"]).exit_code == 2


def test_radio_probes_say_when_they_are_not_in_this_build(tmp_path):
    import importlib.util

    for args, module in ((["lora", "listen", "/dev/null", "--seconds", "1"], "drivers.lora.probe"),
                         (["modem", "info", "/dev/null"], "drivers.cellular.probe")):
        res = gateway(tmp_path, *args)
        if importlib.util.find_spec(module) is None:
            assert res.exit_code == 1 and "not available in this build" in res.output
        else:
            assert "not available in this build" not in res.output
