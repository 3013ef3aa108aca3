"""Milesight LoRaWAN codecs against the vendor's documented example payloads (Milesight-IoT/SensorDecoders
READMEs and TheThingsNetwork/lorawan-devices codec examples); events as the other drivers raise them."""

from __future__ import annotations

import pytest

from drivers.codecs import CodecMeta, milesight_gs101, milesight_gs524n, milesight_leak, milesight_ws301
from drivers.codecs.registry import CODECS
from gateway.errors import CodecError
from gateway.model import Event, EventKind, Reading, Stamp

META = CodecMeta("dev-1", Stamp(1_790_000_000.0, "b", 1, True), "lorawan", rssi_dbm=-97, snr_db=7.5)
K = EventKind


def split(items):
    assert isinstance(items[0], Reading) and all(isinstance(i, Event) for i in items[1:])
    return items[0].values, [(e.kind, e.code) for e in items[1:]]


def test_gs524n_readme_sample():
    # GS_Series/GS524N/README.md: 221E64001C40 -> version 2, protocol 2, battery 100, concentration 0,
    # temperature 28, "testing alarm with normal battery".
    values, events = split(milesight_gs524n.decode(bytes.fromhex("221E64001C40"), META))
    assert values == {"alarm": False, "battery_pct": 100, "smoke_pct": 0, "temperature_c": 28, "message": "test_normal_battery",
                      "firmware_version": 2, "rssi_dbm": -97, "snr_db": 7.5}
    assert events == [(K.TEST, "self_test")]


def test_gs524n_alarm_is_the_smoke_alarm_every_driver_raises():
    payload = milesight_gs524n.encode("alarm", smoke_pct=12, temperature_c=-5)
    values, events = split(milesight_gs524n.decode(payload, META))
    assert events == [(K.ALARM, "smoke")] and values["temperature_c"] == -5 and values["alarm"] is True
    assert split(milesight_gs524n.decode(milesight_gs524n.encode("normal"), META))[1] == [(K.HEARTBEAT, ""), (K.ALARM_CLEARED, "smoke")]


@pytest.mark.parametrize("hexs, why", [("221E64001C41", "check byte"), ("221E64001C", "need 6"), ("222164001C3D", "sensor type"),
                                       ("2213640019" + "00", "check byte")])
def test_gs524n_bad_payloads(hexs, why):
    with pytest.raises(CodecError, match=why):
        milesight_gs524n.decode(bytes.fromhex(hexs), META)


def test_ws303_readme_examples():
    # WS_Series/WS303/README.md: 017564 030000 -> normal; 017564 030001 -> leak.
    assert split(CODECS["milesight_ws303"](bytes.fromhex("017564030000"), META)) == (
        {"battery_pct": 100, "leak": False, "rssi_dbm": -97, "snr_db": 7.5}, [(K.ALARM_CLEARED, "leak"), (K.HEARTBEAT, "")])
    assert split(CODECS["milesight_ws303"](bytes.fromhex("017564030001"), META))[1][0] == (K.ALARM, "leak")
    assert milesight_leak.encode_ws303(True) == bytes.fromhex("017564030001")


def test_em300_sld_readme_examples():
    # EM300-SLD README: 01755C 03673401 046865 050000 -> battery 92, 30.8 °C, 50.5 %RH, normal.
    values, events = split(CODECS["milesight_em300_sld"](bytes.fromhex("01755C03673401046865050000"), META))
    assert (values["battery_pct"], values["temperature_c"], values["humidity_pct"], values["leak"]) == (92, 30.8, 50.5, False)
    assert events == [(K.ALARM_CLEARED, "leak"), (K.HEARTBEAT, "")]
    # 20CE9E74466310015D01: a historical record (27.2 °C, 46.5 %RH, leak, 1665561758) is not a new alarm.
    with pytest.raises(CodecError, match="historical"):
        CODECS["milesight_em300_sld"](bytes.fromhex("20CE9E74466310015D01"), META)


def test_ws301_readme_and_ttn_examples():
    # WS_Series/WS301/README.md: 01 75 64 03 00 01 04 00 01 -> battery 100, open, not installed.
    values, events = split(milesight_ws301.decode(bytes.fromhex("017564030001040001"), META))
    assert (values["battery_pct"], values["door_open"], values["removed"]) == (100, True, True)
    assert events == [(K.ALARM, "door_open"), (K.TAMPER, "removed")]
    # TTN lorawan-devices ws301-codec.yaml: [03 00 01] -> door open; [04 00 01] -> install no.
    assert split(milesight_ws301.decode(bytes.fromhex("030001"), META))[1] == [(K.ALARM, "door_open")]
    assert split(milesight_ws301.decode(bytes.fromhex("040001"), META))[1] == [(K.TAMPER, "removed")]


def test_gs101_channels_from_the_readme_table():
    # GS_Series/GS101/README.md publishes the channel table but no example frame: these are built from it.
    values, events = split(milesight_gs101.decode(bytes.fromhex("058e01060101070101"), META))
    assert (values["gas_alarm"], values["valve_on"], values["relay_on"]) == (True, True, True)
    assert events == [(K.ALARM, "gas_low")]
    assert split(milesight_gs101.decode(bytes.fromhex("ff3f02"), META))[1] == [(K.FAULT, "sensor")]
    assert split(milesight_gs101.decode(bytes.fromhex("058e00" + "08900000e001"), META))[0]["life_months"] == 12
    info = milesight_gs101.decode(bytes.fromhex("ff0101ff0b01ff0a0114"), META)
    assert split(info) == ({"firmware_version": "v1.20", "rssi_dbm": -97, "snr_db": 7.5}, [(K.HEARTBEAT, "power_on")])


@pytest.mark.parametrize("codec", ["milesight_gs101", "milesight_ws303", "milesight_em300_sld", "milesight_ws301"])
@pytest.mark.parametrize("hexs, why", [("", "no known channel"), ("9999", "no known channel"), ("ff0a01", "truncated")])
def test_channel_codecs_refuse_garbage(codec, hexs, why):
    with pytest.raises(CodecError, match=why):
        CODECS[codec](bytes.fromhex(hexs), META)
