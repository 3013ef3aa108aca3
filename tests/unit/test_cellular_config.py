"""Port and profile schemas of the cellular drivers, IMEI checks, the registry specs."""

from __future__ import annotations

import msgspec
import pytest

import drivers.cellular.spec as cellular
from drivers.cellular.config import NbiotPort, SmsPort, check_imei, luhn_digit
from drivers.cellular.simnbiot import make_imei


def test_imei_with_valid_luhn_digit_is_accepted():
    assert luhn_digit("49015420323751") == 8  # 3GPP TS 23.003 Annex B example IMEI 490154203237518
    assert check_imei("490154203237518") is None and check_imei(make_imei(5)) is None


@pytest.mark.parametrize(("address", "words"), [
    ("490154203237517", "check digit"),
    ("12345", "15 digits"),
    (490154203237518, "quoted string"),
    ("49015420323751X", "15 digits"),
])
def test_bad_imeis_are_explained(address, words):
    assert words in check_imei(address)


def test_specs():
    assert (cellular.SPEC_NBIOT.name, cellular.SPEC_NBIOT.protocol) == ("nbiot_bc95", "nbiot")
    assert (cellular.SPEC_SMS.name, cellular.SPEC_SMS.protocol, cellular.SPEC_SMS.profile_schema) == ("sms_ec200", "sms", None)
    assert "no devices" in cellular.SPEC_SMS.check_address("x")


def test_modem_mode_needs_a_path_relay_mode_does_not():
    with pytest.raises(msgspec.ValidationError, match="needs path"):
        msgspec.convert({"mode": "modem"}, NbiotPort)
    assert msgspec.convert({"mode": "relay"}, NbiotPort).path == ""
    assert msgspec.convert({"path": "/dev/ttyAMA1"}, NbiotPort).timeouts.query_s == 0.3
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"path": "/dev/x", "baud": 1234}, SmsPort)
