"""GB/T 26875.3 objects: round trips for every type we use, and the ADU-level bad inputs."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import FrameError
from gateway.uplink.gb26875.objects import (DESCRIPTION_LEN, DeviceOperation, DeviceState, OperatorCheck, PartAnalog,
                                            PartState, TimeSync, TypeFlag, decode_adu, encode_adu, pack_description)

u8 = st.integers(0, 255)
times = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2255, 12, 31)).map(lambda t: t.replace(microsecond=0))
# Text whose GB18030 form fits the 31-byte field (no NUL: it is the padding).
descriptions = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=15).filter(
    lambda s: len(s.encode("gb18030")) <= DESCRIPTION_LEN)

OBJECTS = {
    TypeFlag.PART_STATE: st.builds(PartState, u8, u8, u8, st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF), descriptions, times),
    TypeFlag.PART_ANALOG: st.builds(PartAnalog, u8, u8, u8, st.integers(0, 0xFFFFFFFF), u8, st.integers(-0x8000, 0x7FFF), times),
    TypeFlag.DEVICE_STATE: st.builds(DeviceState, u8, times),
    TypeFlag.DEVICE_OPERATION: st.builds(DeviceOperation, u8, u8, times),
    TypeFlag.TIME_SYNC: st.builds(TimeSync, times),
    TypeFlag.OPERATOR_CHECK: st.builds(OperatorCheck, u8),
}


@pytest.mark.parametrize("flag", list(OBJECTS), ids=lambda f: f.name)
def test_every_object_type_round_trips(flag):
    @settings(max_examples=100, deadline=None)
    @given(st.lists(OBJECTS[flag], min_size=1, max_size=5))
    def check(objs):
        got_flag, got = decode_adu(encode_adu(objs))
        assert got_flag == flag and got == objs

    check()


def test_description_is_cut_at_a_character_boundary_and_padded():
    raw = pack_description("二号楼一单元四零一室东侧厨房燃气表旁边")  # 2 bytes per character: 38 > 31
    assert len(raw) == DESCRIPTION_LEN
    assert raw.rstrip(b"\0").decode("gb18030") == "二号楼一单元四零一室东侧厨房燃"


def _part_state_adu(desc: bytes) -> bytes:
    return bytes((2, 1, 1, 3, 40)) + (5).to_bytes(4, "little") + (3).to_bytes(2, "little") + desc + bytes((0, 0, 12, 1, 1, 26))


def test_description_not_valid_gb18030_is_rejected():
    with pytest.raises(FrameError) as err:
        decode_adu(_part_state_adu(b"\x81\x20" + b"\0" * 29))
    assert err.value.reason == "bad_description"


def test_object_count_times_size_not_matching_the_length_is_rejected():
    good = _part_state_adu(b"ok".ljust(31, b"\0"))
    for bad in (good[:1] + b"\x02" + good[2:], good + b"\0", good[:-1]):
        with pytest.raises(FrameError) as err:
            decode_adu(bad)
        assert err.value.reason == "count_mismatch"


def test_zero_objects_is_rejected():
    with pytest.raises(FrameError) as err:
        decode_adu(bytes((21, 0)))
    assert err.value.reason == "count_mismatch"


def test_object_time_tag_month_13_is_rejected():
    with pytest.raises(FrameError) as err:
        decode_adu(bytes((21, 1, 1, 0, 0, 12, 1, 13, 26)))
    assert err.value.reason == "bad_time_tag"


def test_unknown_type_flag_is_rejected():
    with pytest.raises(FrameError) as err:
        decode_adu(bytes((77, 1, 0)))
    assert err.value.reason == "unknown_type"


def test_encoder_refuses_mixed_types_and_out_of_range_values():
    t = dt.datetime(2026, 1, 1)
    with pytest.raises(FrameError):
        encode_adu([DeviceState(1, t), TimeSync(t)])
    with pytest.raises(FrameError):
        encode_adu([PartAnalog(1, 1, 0, 1, 5, 40_000, t)])
    with pytest.raises(FrameError):
        encode_adu([])
