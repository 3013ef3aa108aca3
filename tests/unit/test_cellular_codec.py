"""Codec nbiot_smoke_v1: every message type, its byte layout, the ack bytes, and bad payloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.codecs import CodecMeta
from drivers.codecs import nbiot_smoke as c
from gateway.errors import CodecError
from gateway.model import Event, EventKind, Reading, Stamp

IMEI = "861234560000013"
META = CodecMeta("smoke-1", Stamp(1_790_000_000.0, "b", 1, True), "nbiot-modem")


def test_layout_byte_by_byte():
    data = c.encode(IMEI, c.ALARM, 0x0102, flags=0x01, battery_mv=3600, smoke_db_m=0.35, temperature_c=-5)
    assert data.hex() == "a501" "861234560000013f" "02" "0102" "01" "00" "0e10" "23" "fb" + f"{sum(data[:19]) & 0xFF:02x}"


@pytest.mark.parametrize(("msg", "fault", "kind", "code"), [
    (c.HEARTBEAT, 0, EventKind.HEARTBEAT, ""),
    (c.ALARM, 0, EventKind.ALARM, "smoke"),
    (c.ALARM_CLEARED, 0, EventKind.ALARM_CLEARED, "smoke"),
    (c.SILENCED, 0, EventKind.SILENCED, "local"),
    (c.SELF_TEST, 0, EventKind.TEST, "self_test"),
    (c.FAULT, 2, EventKind.FAULT, "chamber_fouled"),
    (c.FAULT_CLEARED, 3, EventKind.FAULT_CLEARED, "buzzer"),
    (c.REMOVED, 0, EventKind.TAMPER, "removed_from_base"),
    (c.BATTERY_LOW, 0, EventKind.BATTERY_LOW, "battery"),
])
def test_each_message_type_decodes_to_its_event(msg, fault, kind, code):
    reading, event = c.decode(c.encode(IMEI, msg, 7, fault_code=fault, battery_mv=2550), META)
    assert isinstance(reading, Reading) and isinstance(event, Event)
    assert (event.kind, event.code, event.detail["seq"], event.via) == (kind, code, 7, "nbiot-modem")
    assert reading.values["battery_mv"] == 2550
    assert reading.values["fault_chamber_fouled"] is (fault == 2)


def test_ack_bytes():
    assert c.ack(c.encode(IMEI, c.ALARM, 0x0102)).hex() == "a5018002010200" + f"{(0xA5 + 1 + 0x80 + 2 + 1 + 2) & 0xFF:02x}"
    assert c.parse_ack(c.ack(c.encode(IMEI, c.ALARM, 513))) == (c.ALARM, 513)


@pytest.mark.parametrize("mutate", [
    lambda d: d[:-1],  # short
    lambda d: b"\x00" + d[1:],  # start byte
    lambda d: d[:19] + bytes([d[19] ^ 1]),  # checksum
    lambda d: d[:10] + b"\x77" + d[11:19] + bytes([(sum(d[:10]) + 0x77 + sum(d[11:19])) & 0xFF]),  # type
])
def test_bad_payloads_raise_codec_error(mutate):
    with pytest.raises(CodecError):
        c.decode(mutate(c.encode(IMEI, c.ALARM, 1)), META)


def test_fault_without_code_is_rejected():
    with pytest.raises(CodecError):
        c.decode(c.encode(IMEI, c.FAULT, 1, fault_code=0), META)


@given(st.binary(max_size=40))
def test_random_bytes_never_raise_anything_but_codec_error(data):
    try:
        c.decode(data, META)
    except CodecError:
        pass
