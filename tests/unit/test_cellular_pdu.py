"""SMS-SUBMIT PDUs: the public vectors of protocols.md §1.5 byte for byte, concatenation, decoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.cellular.pdu import Pdu, decode_submit, encode_submit, vp_relative
from gateway.errors import CommandRejected


def test_vector_fire_alarm_in_chinese_to_plus86():
    assert encode_submit("+8613800138000", "火警", validity=0xAA) == [Pdu("0011000D91683108108300F00008AA04706B8B66", 19)]


def test_vector_node_sms_pdu_readme_without_validity():
    # futomi/node-sms-pdu README: generateSubmit('09012345678','こんにちわ'), length 23.
    assert encode_submit("09012345678", "こんにちわ", validity=None) == [Pdu("0001000B819010325476F800080A30533093306B3061308F", 23)]


def test_validity_96_hours_is_0xaa():
    assert vp_relative(96) == 0xAA and vp_relative(1) == 11 and vp_relative(24) == 167


def test_seventy_units_fit_one_part_seventy_one_need_two_with_udh():
    assert len(encode_submit("+8613800138000", "火" * 70)) == 1
    parts = encode_submit("+8613800138000", "火" * 71, reference=0x42)
    assert len(parts) == 2
    assert parts[0].hex.startswith("0051000D91683108108300F00008AA8C0500034202")  # UDHI, UDL 140, ref 42, 2 parts
    assert [decode_submit(p.hex).concat for p in parts] == [(0x42, 2, 1), (0x42, 2, 2)]
    assert parts[0].tpdu_octets == len(bytes.fromhex(parts[0].hex)) - 1


def test_surrogate_pair_is_never_split():
    text = "火" * 66 + "🔥" + "警" * 10
    parts = encode_submit("+8613800138000", text)
    assert "".join(decode_submit(p.hex).text for p in parts) == text


@pytest.mark.parametrize("number", ["", "+", "12a45", "+" + "1" * 21])
def test_bad_numbers_are_rejected_clearly(number):
    with pytest.raises(CommandRejected) as e:
        encode_submit(number, "火警")
    assert e.value.reason == "bad_number"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=400), st.from_regex(r"^\+?[0-9]{3,15}$", fullmatch=True))
def test_round_trip(text, number):
    parts = encode_submit(number, text, reference=9)
    decoded = [decode_submit(p.hex) for p in parts]
    assert "".join(d.text for d in decoded) == text
    assert all(d.number == number for d in decoded)
    assert all(len(bytes.fromhex(p.hex)) - 1 == p.tpdu_octets <= 140 + 30 for p in parts)
