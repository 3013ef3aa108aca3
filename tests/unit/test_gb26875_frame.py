"""GB/T 26875.3 frames: the verified real frame, its corrupt twin, every bad input of protocols.md §5."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import FrameError
from gateway.uplink.gb26875.frame import (MAX_DATA_LEN, Command, Deframer, Frame, SerialCounter, checksum, decode,
                                          encode)
from gateway.uplink.gb26875.objects import PartState, TypeFlag, decode_adu

DESCRIPTION = "Ａ区１层呷哺走廊"
# protocols.md §5, from shootingfans/codec_gb26875_3_2011 reader_decoder_test.go (checksum recomputed: 0x68).
HEAD = bytes.fromhex("4040 0000 0101 180d11160a14 000000000000 060504030201 3000 02")
ADU = bytes.fromhex("0201 01 03 00 d9000600 0200") + DESCRIPTION.encode("gb18030").ljust(31, b"\0") + bytes.fromhex("301213010814")
REAL = HEAD + ADU + bytes.fromhex("68 2323")
CORRUPT = HEAD + ADU + bytes.fromhex("63 2323")


def reasons(items):
    return [i.reason for i in items if isinstance(i, FrameError)]


def frames(items):
    return [i for i in items if isinstance(i, Frame)]


def test_real_frame_decodes_to_the_documented_fields():
    f = decode(REAL)
    assert (f.serial, f.command, f.version) == (0, Command.SEND_DATA, (1, 1))
    assert f.time == dt.datetime(2020, 10, 22, 17, 13, 24)
    assert (f.source, f.destination) == (0, 0x010203040506)
    flag, objs = decode_adu(f.data)
    assert flag == TypeFlag.PART_STATE
    assert objs == [PartState(1, 3, 0, 0x0600D9, 0x0002, DESCRIPTION, dt.datetime(2020, 8, 1, 19, 18, 48))]


def test_real_frame_reencodes_byte_for_byte():
    assert encode(decode(REAL)) == REAL


def test_corrupt_twin_is_rejected_for_its_checksum():
    with pytest.raises(FrameError) as err:
        decode(CORRUPT)
    assert err.value.reason == "bad_checksum"
    assert checksum(REAL[2:-3]) == 0x68


@pytest.mark.parametrize(
    "raw, reason",
    [
        (REAL[2:], "no_start"),  # missing "@@"
        (b"\x00\x17" + REAL, "no_start"),  # noise before it (decode wants exactly one frame)
        (REAL[:24] + (200).to_bytes(2, "little") + REAL[26:], "truncated"),  # length points past the buffer
        (REAL[:-3] + b"\x00##", "bad_checksum"),
        (REAL[:-2], "truncated"),  # missing "##" at the end of the buffer
        (REAL[:-2] + b"$$", "no_end"),
        (REAL[:24] + (MAX_DATA_LEN + 1).to_bytes(2, "little") + REAL[26:], "length_too_large"),
        (REAL[:26] + b"\x09" + REAL[27:-3] + bytes([(0x68 + 7) & 0xFF]) + b"##", "bad_command"),
        (REAL + b"\x00", "trailing_bytes"),
    ],
    ids=["missing_start", "noise_before", "length_past_buffer", "wrong_checksum", "missing_end_short",
         "wrong_end", "length_too_large", "unknown_command", "trailing_bytes"],
)
def test_bad_input_is_rejected_with_its_reason(raw, reason):
    with pytest.raises(FrameError) as err:
        decode(raw)
    assert err.value.reason == reason


def _with_time_tag(tag: bytes) -> bytes:
    body = REAL[2:6] + tag + REAL[12:-3]
    return b"@@" + body + bytes([checksum(body)]) + b"##"


def test_header_time_tag_month_13_is_rejected():
    with pytest.raises(FrameError) as err:
        decode(_with_time_tag(bytes([24, 13, 17, 22, 13, 20])))
    assert err.value.reason == "bad_time_tag"


def test_header_time_tag_february_30_is_rejected():
    with pytest.raises(FrameError) as err:
        decode(_with_time_tag(bytes([0, 0, 0, 30, 2, 24])))
    assert err.value.reason == "bad_time_tag"


def test_serial_counter_wraps_from_65535_to_0_and_frames_carry_both():
    counter = SerialCounter(65534)
    assert [counter.next() for _ in range(3)] == [65534, 65535, 0]
    for serial in (65535, 0):
        f = Frame(serial, Command.CONFIRM, 1, 2, dt.datetime(2026, 1, 1))
        assert decode(encode(f)).serial == serial


def test_encoder_refuses_a_serial_beyond_16_bits():
    with pytest.raises(FrameError) as err:
        encode(Frame(65536, Command.CONFIRM, 1, 2, dt.datetime(2026, 1, 1)))
    assert err.value.reason == "serial_out_of_range"


def test_deframer_finds_frames_after_noise_and_after_the_corrupt_twin():
    d = Deframer()
    out = d.feed(b"\x00\xffnoise@" + CORRUPT + REAL + b"@" + REAL)
    assert [f.serial for f in frames(out)] == [0, 0]
    assert "bad_checksum" in reasons(out)
    assert "noise" in reasons(out)


def test_deframer_one_byte_at_a_time():
    d = Deframer()
    out = []
    for b in REAL * 3:
        out += d.feed(bytes([b]))
    assert len(frames(out)) == 3 and not reasons(out)


def test_deframer_resyncs_after_a_frame_with_a_bad_end():
    d = Deframer()
    out = d.feed(REAL[:-2] + b"$$" + REAL)
    assert reasons(out)[0] == "no_end"
    assert len(frames(out)) == 1


def test_deframer_rejects_a_huge_length_and_keeps_its_buffer_bounded():
    d = Deframer()
    bogus = REAL[:24] + b"\xff\xff" + REAL[26:]
    out = d.feed(bogus + REAL)
    assert "length_too_large" in reasons(out)
    assert len(frames(out)) == 1
    out = d.feed(b"\x00" * 100_000)
    assert len(d._buf) <= 1 and reasons(out) == ["noise"]


def test_deframer_waits_for_the_rest_of_a_partial_frame():
    d = Deframer()
    assert d.feed(REAL[:40]) == []
    assert len(frames(d.feed(REAL[40:]))) == 1


@settings(max_examples=200, deadline=None)
@given(
    serial=st.integers(0, 0xFFFF),
    command=st.sampled_from(list(Command)),
    src=st.integers(0, (1 << 48) - 1),
    dst=st.integers(0, (1 << 48) - 1),
    when=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2255, 12, 31)).map(lambda t: t.replace(microsecond=0)),
    data=st.binary(max_size=300),
)
def test_any_frame_round_trips_through_encode_and_the_deframer(serial, command, src, dst, when, data):
    f = Frame(serial, command, src, dst, when, data)
    raw = encode(f)
    assert decode(raw) == f
    assert frames(Deframer().feed(b"\x23" + raw)) == [f]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_deframer_never_raises_on_arbitrary_bytes(noise):
    d = Deframer()
    d.feed(noise)
    assert len(frames(d.feed(REAL))) >= 0
