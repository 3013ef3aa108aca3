"""Milesight payloads of the care devices (issue 22): WS101 SOS presses, EM300-DI pulses;
test vectors built from the SensorDecoders channel tables; bad payloads are CodecError, never a crash."""

from __future__ import annotations

import pytest

from drivers.codecs import CodecMeta
from drivers.codecs.registry import CODECS
from gateway.clock import ManualClock
from gateway.errors import CodecError
from gateway.model import Event, EventKind, Reading

META = CodecMeta("sos-401", ManualClock().now(), "lora", rssi_dbm=-90)


def _events(items):
    return [(i.kind, i.code, dict(i.detail)) for i in items if isinstance(i, Event)]


@pytest.mark.parametrize("press,kind,word", [(1, EventKind.ALARM, "short"), (2, EventKind.ALARM_CLEARED, "long"),
                                             (3, EventKind.ALARM_CLEARED, "double")])
def test_ws101_short_press_is_sos_long_and_double_cancel(press, kind, word):
    items = CODECS["milesight_ws101"](bytes([0x01, 0x75, 0x5A, 0xFF, 0x2E, press]), META)
    assert isinstance(items[0], Reading) and items[0].values == {"battery_pct": 90, "rssi_dbm": -90}
    assert _events(items) == [(kind, "sos", {"press": word})]


def test_ws101_battery_only_report_is_a_heartbeat_and_info_channels_are_skipped():
    items = CODECS["milesight_ws101"](bytes.fromhex("ff0b01ff0901 10".replace(" ", "")) + bytes([0x01, 0x75, 0x40]), META)
    assert _events(items) == [(EventKind.HEARTBEAT, "", {})]


def test_em300di_pulses_little_endian():
    items = CODECS["milesight_em300di"](bytes([0x05, 0xC8, 0x10, 0x27, 0x00, 0x00]), META)
    assert items[0].values["pulses"] == 10000


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x75", b"\x05\xc8\x01\x02", b"\x99\x99\x00", b"\xff\x2e\x09"],
                         ids=["empty", "half_header", "no_data", "short_counter", "unknown_channel", "unknown_press"])
def test_bad_payloads_are_codec_errors(payload):
    with pytest.raises(CodecError):
        CODECS["milesight_ws101"](payload, META)
        CODECS["milesight_em300di"](payload, META)


def test_battery_at_or_below_10_percent_is_battery_low_like_the_detectors():
    items = CODECS["milesight_ws101"](bytes([0x01, 0x75, 10]), META)
    assert (EventKind.BATTERY_LOW, "battery", {"battery_pct": 10}) in _events(items)
    assert not any(k == EventKind.BATTERY_LOW for k, _, _ in _events(CODECS["milesight_em300di"](bytes([0x01, 0x75, 11]), META)))
