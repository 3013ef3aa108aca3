"""Properties of the sans-IO cellular code over generated inputs: the AT parser gives the same answer and
the same URCs however the bytes are chunked and wherever the BC95 manual lets URCs land; TP-VP follows
the four ranges of 3GPP TS 23.040 §9.2.3.12.1; decode_submit refuses what is not a UCS2 SMS-SUBMIT."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.cellular.at import AtParser, Done, Urc
from drivers.cellular.commands import Timeouts, command_for
from drivers.cellular.pdu import decode_submit, encode_submit, vp_relative
from gateway.errors import ModemError

INFO = st.from_regex(r"\+CSQ:[0-9]{1,2},[0-9]{1,2}", fullmatch=True)
URCS = st.sampled_from(["+CSCON:1", "+CSCON:0", "+NSONMI:0,12", "+CEREG:2", "+NPSMR:0", "+CTZV:+32"])
FINAL = st.sampled_from(["OK", "ERROR", "+CME ERROR:159", "+CME ERROR: 4", "+CMS ERROR: 500"])
EOL = st.sampled_from(["\r\n", "\r\r\n"])


@st.composite
def exchanges(draw):
    """(wire bytes, info lines, final, urcs in order) for one AT+CSQ with echo, URCs and chunk cuts."""
    info = draw(st.lists(INFO, max_size=2))
    final = draw(FINAL)
    if final != "OK":
        info = []  # an error carries no information lines
    before = draw(st.lists(URCS, max_size=2))  # between the echo and the first line (BC95 manual §1.3)
    after = draw(st.lists(URCS, max_size=2))  # right after the final result
    echo = draw(st.booleans())
    eol = draw(EOL)
    text = ("AT+CSQ\r" + eol if echo else "") + "".join(f"\r\n{u}{eol}" for u in before)
    text += "".join(f"\r\n{line}{eol}" for line in info) + f"\r\n{final}{eol}" + "".join(f"\r\n{u}{eol}" for u in after)
    data = text.encode()
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=8)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    return chunks, info, final, before + after


@settings(max_examples=150, deadline=None)
@given(exchanges())
def test_any_chunking_and_allowed_urc_placement_gives_the_same_answer(ex):
    chunks, info, final, urcs = ex
    p = AtParser()
    p.begin(command_for("AT+CSQ", Timeouts())[0])
    out = [o for c in chunks for o in p.feed(c)]
    (done,) = [o for o in out if isinstance(o, Done)]
    assert list(done.lines) == info
    assert (done.error is None) == (final == "OK")
    if final != "OK":
        assert isinstance(done.error, ModemError)
    assert [o.line for o in out if isinstance(o, Urc)] == urcs
    assert p.in_flight is None and not p.counters["unexpected_lines"]


@pytest.mark.parametrize(("hours", "vp"), [
    (5 / 60, 0),  # 0-143: (VP + 1) x 5 minutes
    (12, 143),
    (12.5, 144),  # 144-167: 12 hours + (VP - 143) x 30 minutes
    (24, 167),
    (48, 168),  # 168-196: (VP - 166) days
    (30 * 24, 196),
    (35 * 24, 197),  # 197-255: (VP - 192) weeks
    (63 * 7 * 24, 255),
    (100 * 7 * 24, 255),  # beyond the table: the longest it can say
])
def test_validity_period_ranges(hours, vp):
    assert vp_relative(hours) == vp


def _retype(pdu_hex: str, offset: int, value: int) -> str:
    data = bytearray.fromhex(pdu_hex)
    data[offset] = value
    return data.hex().upper()


def test_decode_refuses_what_is_not_a_ucs2_sms_submit():
    (pdu,) = encode_submit("+8613800138000", "火警")
    assert decode_submit(pdu.hex).text == "火警"
    # octet 1 is the first octet of the TPDU (after the empty SCA): 0x00 would be an SMS-DELIVER.
    with pytest.raises(ValueError, match="not an SMS-SUBMIT"):
        decode_submit(_retype(pdu.hex, 1, 0x00))
    # DCS sits after MR, the 9-octet address and PID: offset 1 + 1 + 1 + 9 + 1 = 13.
    with pytest.raises(ValueError, match="not UCS2"):
        decode_submit(_retype(pdu.hex, 13, 0x00))
    with pytest.raises(ValueError, match="UDL"):
        decode_submit(pdu.hex + "00")  # one octet more than the UDL says


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x10000, max_codepoint=0x1F9FF), min_size=30, max_size=200))
def test_texts_of_astral_characters_split_only_between_characters(text):
    parts = encode_submit("+8613800138000", text, reference=1)
    decoded = [decode_submit(p.hex) for p in parts]
    assert "".join(d.text for d in decoded) == text  # every part decodes on its own: no half surrogate pair
    assert all(len(d.text.encode("utf-16-be")) <= 134 for d in decoded if d.concat)  # 67 units per part
