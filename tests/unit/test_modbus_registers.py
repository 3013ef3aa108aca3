"""Register decoding of every type and byte/word order, and request merging."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.config import ModbusProfile, RegisterSpec
from drivers.modbus.registers import decode, decode_block, encode, plan
from gateway.errors import CodecError

BIG = ModbusProfile(registers=[])


def regs_of(hexstr: str) -> list[int]:
    raw = bytes.fromhex(hexstr)
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def spec(type_: str, byte: str | None = None, word: str | None = None, **kw) -> RegisterSpec:
    return RegisterSpec(name="v", function=3, address=0, type=type_, byte_order=byte, word_order=word, **kw)


@pytest.mark.parametrize(
    "type_,byte,word,wire,value",
    [
        ("int16", "big", "big", "fc18", -1000),
        ("uint16", "big", "big", "fc18", 64536),
        ("int16", "little", "big", "18fc", -1000),
        ("int32", "big", "big", "fffe7960", -100000),
        ("int32", "big", "little", "7960fffe", -100000),
        ("int32", "little", "big", "feff6079", -100000),
        ("int32", "little", "little", "6079feff", -100000),
        ("uint32", "big", "big", "00030d40", 200000),
        ("uint32", "big", "little", "0d400003", 200000),
        ("float32", "big", "big", "41c80000", 25.0),
        ("float32", "big", "little", "000041c8", 25.0),
        ("float32", "little", "big", "c8410000", 25.0),
        # protocols.md §3.1: a pH meter sends little-endian floats `00 00 C8 41` = 25.0
        ("float32", "little", "little", "0000c841", 25.0),
    ],
)
def test_decode_every_type_and_order(type_, byte, word, wire, value):
    assert decode(spec(type_, byte, word), regs_of(wire), BIG) == pytest.approx(value)
    assert encode(type_, value, byte_order=byte, word_order=word) == regs_of(wire)


def test_ph_meter_vector_10_07():
    assert decode(spec("float32", "little", "little"), regs_of("b81e2141"), BIG) == pytest.approx(10.07, abs=1e-6)


def test_transmitter_scale_and_offset():
    # protocols.md §3.1: 5000 with one decimal -> 500.0
    assert decode(spec("uint16", scale=0.1), [5000], BIG) == 500.0
    assert decode(spec("int16", scale=0.1, offset=-40), [650], BIG) == 25.0


def test_profile_default_order_applies_when_the_field_has_none():
    little = ModbusProfile(registers=[], word_order="little")
    assert decode(spec("uint32"), regs_of("0d400003"), little) == 200000


def test_sentinel_and_nan_are_codec_errors_not_values():
    with pytest.raises(CodecError):
        decode(spec("uint16", invalid=[0xFFFF]), [0xFFFF], BIG)
    with pytest.raises(CodecError):
        decode(spec("float32"), regs_of("7fc00000"), BIG)
    with pytest.raises(CodecError):
        decode(spec("float32"), regs_of("7f800000"), BIG)


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(["big", "little"]), st.sampled_from(["big", "little"]))
def test_int32_roundtrip(v, byte, word):
    assert decode(spec("int32", byte, word), encode("int32", v, byte_order=byte, word_order=word), BIG) == v


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["big", "little"]))
def test_float32_roundtrip(v, order):
    got = decode(spec("float32", order, order), encode("float32", v, byte_order=order, word_order=order), BIG)
    assert got == v or (math.isclose(got, v, rel_tol=1e-6))


def test_encode_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError):
        encode("uint16", -1)
    with pytest.raises(ValueError):
        encode("int16", 40000)


def profile(fields: list[tuple[int, int, str]], max_gap: int = 8) -> ModbusProfile:
    regs = [{"name": f"f{i}", "function": fc, "address": a, "type": t} for i, (fc, a, t) in enumerate(fields)]
    return msgspec.convert({"registers": regs, "max_gap": max_gap}, ModbusProfile)


def test_contiguous_and_near_registers_merge_into_one_request():
    p = profile([(3, 0, "int16"), (3, 1, "uint32"), (3, 10, "float32"), (3, 40, "uint16")], max_gap=8)
    assert [(b.function, b.address, b.count) for b in plan(p)] == [(3, 0, 12), (3, 40, 1)]


def test_merging_respects_the_125_register_limit():
    p = profile([(4, a, "uint16") for a in range(0, 300, 5)], max_gap=8)
    blocks = plan(p)
    assert all(b.count <= 125 for b in blocks)
    assert sum(len(b.fields) for b in blocks) == 60 and len(blocks) == 3


def test_bits_merge_up_to_2000_and_functions_stay_apart():
    p = profile([(2, a, "bool") for a in range(0, 2500, 4)] + [(1, 0, "bool")], max_gap=8)
    blocks = plan(p)
    assert [b.function for b in blocks] == [1, 2, 2]
    assert all(b.count <= 2000 for b in blocks)


def test_decode_block_reports_a_bad_field_and_keeps_the_others():
    p = msgspec.convert({"registers": [
        {"name": "a", "function": 3, "address": 0, "type": "uint16", "invalid": [65535]},
        {"name": "b", "function": 3, "address": 1, "type": "int16", "scale": 0.5},
    ]}, ModbusProfile)
    (block,) = plan(p)
    values, problems = decode_block(block, [65535, 0xFFFE], p)
    assert values == {"b": -1.0} and len(problems) == 1 and "a:" in problems[0]
