"""Modbus config: address checks, profile validation, the shipped profiles load and plan."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from drivers.modbus.spec import SPEC_RTU, SPEC_TCP
from drivers.modbus.config import ModbusProfile, RtuPort
from drivers.modbus.registers import plan
from gateway.config.load import load_profiles

PROFILES = Path(__file__).resolve().parents[2] / "config" / "profiles"


def test_slave_id_messages():
    assert SPEC_RTU.check_address(300) == "300 is not a Modbus slave id (1..247)"
    assert SPEC_RTU.check_address(0) is not None and SPEC_RTU.check_address("1") is not None
    assert SPEC_RTU.check_address(1) is None and SPEC_RTU.check_address(247) is None
    assert SPEC_TCP.check_address(255) is None and SPEC_TCP.check_address(256) is not None


def test_port_defaults_are_9600_8n1_with_own_retry_policy():
    port = msgspec.convert({"path": "/dev/serial/by-id/usb-FTDI-if00-port0"}, RtuPort)
    assert (port.baud, port.bytesize, port.parity, port.stopbits) == (9600, 8, "N", 1)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"path": "/dev/x", "parity": "X"}, RtuPort)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"path": "/dev/x", "baudrate": 9600}, RtuPort)  # unknown key


@pytest.mark.parametrize(
    "table,reason",
    [
        ({"registers": [{"name": "a", "function": 1, "address": 0, "type": "uint16"}]}, "needs type"),
        ({"registers": [{"name": "a", "function": 3, "address": 65535, "type": "uint32"}]}, "runs past"),
        ({"registers": [{"name": "a", "function": 3, "address": 0}] * 2}, "used twice"),
        ({"registers": [{"name": "a", "function": 3, "address": 0}],
          "flags": [{"source": "a", "kind": "alarm", "code": "x"}]}, "not a bits or bool"),
        ({"registers": [], "outputs": {"o": {"function": 6, "address": 0, "type": "float32"}}}, "function 16"),
    ],
)
def test_profile_mistakes_are_reported_with_the_reason(table, reason):
    with pytest.raises(msgspec.ValidationError, match=reason):
        msgspec.convert(table, ModbusProfile)


def test_shipped_profiles_load_and_merge_into_few_requests():
    errors: list[str] = []
    profiles = load_profiles(PROFILES, errors)
    assert not errors
    modbus = {n: msgspec.convert(p.modbus, ModbusProfile) for n, p in profiles.items() if p.protocol == "modbus"}
    assert {"hydrant_monitor", "pump_station", "guard_relay_box"} <= set(modbus)
    assert len(plan(modbus["hydrant_monitor"])) == 1
    assert len(plan(modbus["pump_station"])) == 2  # all DIs in one FC02, all IRs in one FC04
    assert profiles["hydrant_monitor"].params["normal_min_mpa"] == 0.14
    assert profiles["hydrant_monitor"].params["fire_min_mpa"] == 0.10
    assert set(modbus["guard_relay_box"].outputs) == {"sounder", "strobe", "trouble"}
    codes = {f.code for f in modbus["hydrant_monitor"].flags}
    assert {"cap_opened", "tilted", "leak"} <= codes
