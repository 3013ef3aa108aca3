"""E22 register codec, command answers (incl. FF FF FF) and the config comparison messages."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.lora import e22
from drivers.lora.config import LoraPort, LoraProfile, check_address
from drivers.lora.frame import rssi_byte, rssi_dbm
from gateway.errors import FrameError

PORT = msgspec.convert({"path": "/dev/ttyAMA1", "channel": 23, "address": 0xFFFF}, LoraPort)


def test_factory_default_registers_decode():
    # E22-400T22 factory default: 00 00 00 62 00 17 03 00 00 (9600 8N1, 2.4k air, 433.125 MHz)
    regs = e22.E22Registers.from_bytes(bytes.fromhex("000000620017030000"))
    assert (regs.uart_baud, regs.parity, regs.air_rate_bps, regs.channel, regs.sub_packet, regs.power_dbm) == (9600, "8N1", 2400, 23, 240, 22)
    assert not regs.rssi_byte and not regs.fixed_point and e22.frequency_mhz(regs.channel) == 433.125


regs_strategy = st.builds(
    e22.E22Registers, address=st.integers(0, 0xFFFF), netid=st.integers(0, 255), uart_baud=st.sampled_from(e22.UART_BAUDS),
    parity=st.sampled_from(["8N1", "8O1", "8E1"]), air_rate_code=st.integers(0, 7), sub_packet=st.sampled_from(e22.SUB_PACKETS),
    ambient_noise=st.booleans(), software_mode_switch=st.booleans(), power_dbm=st.sampled_from(e22.POWERS_DBM), channel=st.integers(0, 255),
    rssi_byte=st.booleans(), fixed_point=st.booleans(), relay=st.booleans(), lbt=st.booleans(), wor_role=st.booleans(),
    wor_cycle=st.integers(0, 7), crypt=st.integers(0, 0xFFFF))


@given(regs_strategy)
def test_register_round_trip(regs):
    assert e22.E22Registers.from_bytes(regs.to_bytes()) == regs


def test_read_answer_exact_bytes_and_crypt_reads_zero():
    regs = e22.E22Registers(address=0x1234, channel=5, rssi_byte=True, fixed_point=True, crypt=0xBEEF)
    answer, after = e22.module_answer(e22.READ_ALL, regs)
    assert answer == bytes.fromhex("c1 00 09 12 34 00 62 00 05 c3 00 00")
    assert e22.parse_answer(answer) == bytes.fromhex("12 34 00 62 00 05 c3 00 00") and after == regs


def test_write_command_changes_registers_and_answers_like_a_read():
    regs = e22.E22Registers()
    answer, after = e22.module_answer(bytes.fromhex("c2 05 02 10 c0"), regs)
    assert answer == bytes.fromhex("c1 05 02 10 c0") and after.channel == 0x10 and after.rssi_byte and after.fixed_point


@pytest.mark.parametrize("command", ["c1 00", "c1 00 0a", "c3 c3 c3", "c0 00 02 01", "c1 08 02", ""])
def test_bad_format_answers_ff_ff_ff(command):
    assert e22.module_answer(bytes.fromhex(command), e22.E22Registers())[0] == e22.BAD_FORMAT


def test_parse_answer_partial_bad_format_and_foreign_module():
    assert e22.parse_answer(b"\xc1\x00\x09\x00") is None and e22.parse_answer(b"\xff\xff") is None
    with pytest.raises(FrameError, match="bad_format"):
        e22.parse_answer(b"\xff\xff\xff")
    with pytest.raises(FrameError, match="unexpected_answer"):
        e22.parse_answer(bytes.fromhex("c0 00 00 1a 17 44"))  # an E32 answering with its C0 + 5 bytes


def test_mismatch_messages_name_every_difference():
    good = e22.E22Registers.for_port(PORT)
    assert e22.mismatches(good, PORT) == []
    bad = dataclasses.replace(good, channel=30, address=0x0001, air_rate_code=5, fixed_point=False, rssi_byte=False)
    problems = e22.mismatches(bad, PORT)
    assert "channel: module 30 (440.125 MHz), config 23 (433.125 MHz)" in problems
    assert "address: module 0x0001, config 0xffff" in problems
    assert "air rate: module 19200 bit/s, config 2400 bit/s" in problems
    assert any("fixed-point" in p for p in problems) and any(p.startswith("RSSI byte: module off") for p in problems)


def test_port_schema_refuses_transparent_mode_and_half_wired_pins():
    with pytest.raises(msgspec.ValidationError, match="fixed_point must be true"):
        msgspec.convert({"path": "/dev/x", "fixed_point": False}, LoraPort)
    with pytest.raises(msgspec.ValidationError, match="m0_gpio and m1_gpio"):
        msgspec.convert({"path": "/dev/x", "m0_gpio": 5}, LoraPort)
    with pytest.raises(msgspec.ValidationError, match="needs keyed"):
        msgspec.convert({"codec": "smoke_v1", "keyed": False, "encrypted": True}, LoraProfile)


@pytest.mark.parametrize("address, ok", [(1, True), (0xFFFFFFFE, True), (0, False), (0xFFFFFFFF, False), ("12", False), (True, False)])
def test_check_address(address, ok):
    problem = check_address(address)
    assert (problem is None) == ok
    if not ok:
        assert "LoRa device id" in problem


def test_reg1_bit4_software_mode_switching_is_kept_not_discarded():
    regs = e22.E22Registers.from_bytes(bytes.fromhex("ffff0062 30 17 c30000".replace(" ", "")))
    assert regs.software_mode_switch and regs.ambient_noise and regs.power_dbm == 22
    assert regs.to_bytes()[4] == 0x30
    answer, after = e22.module_answer(bytes.fromhex("c0 04 01 10"), e22.E22Registers())
    assert answer == bytes.fromhex("c1 04 01 10") and after.software_mode_switch


@pytest.mark.parametrize(("edition", "code", "config_bps", "problem"), [
    ("2024", 0, 2400, None),
    ("2018", 0, 300, None),
    ("2018", 1, 1200, None),
    ("2018", 0, 2400, "air rate: module 300 bit/s, config 2400 bit/s"),
    ("2024", 1, 2400, None),
    ("auto", 2, 2400, None),
    ("auto", 7, 2400, "air rate: module 62500 bit/s, config 2400 bit/s"),
])
def test_air_rate_codes_are_read_per_firmware_edition(edition, code, config_bps, problem):
    port = msgspec.convert({"path": "/dev/x", "e22_edition": edition, "air_rate_bps": config_bps}, LoraPort)
    regs = dataclasses.replace(e22.E22Registers.for_port(port), air_rate_code=code)
    air = [p for p in e22.mismatches(regs, port) if p.startswith("air rate")]
    assert air == ([problem] if problem else [])


@pytest.mark.parametrize("code", [0, 1])
def test_auto_edition_refuses_the_ambiguous_codes_and_names_the_fix(code):
    regs = dataclasses.replace(e22.E22Registers.for_port(PORT), air_rate_code=code)
    (problem,) = [p for p in e22.mismatches(regs, PORT) if p.startswith("air rate")]
    assert "2024-edition" in problem and "2018-edition" in problem and "e22_edition" in problem and "010" in problem


def test_for_port_writes_the_code_every_edition_reads_alike_and_slow_rates_need_2018():
    assert e22.E22Registers.for_port(PORT).air_rate_code == 2
    slow = msgspec.convert({"path": "/dev/x", "e22_edition": "2018", "air_rate_bps": 300}, LoraPort)
    assert e22.E22Registers.for_port(slow).air_rate_code == 0
    with pytest.raises(msgspec.ValidationError, match="e22_edition"):
        msgspec.convert({"path": "/dev/x", "air_rate_bps": 1200}, LoraPort)


@pytest.mark.parametrize(("edition", "dbm", "byte"), [("2024", -97, 159), ("2018", -97, 194), ("2024", -1, 255), ("2018", -120, 240)])
def test_rssi_byte_formula_per_edition(edition, dbm, byte):
    assert rssi_byte(dbm, edition) == byte and rssi_dbm(byte, edition) == dbm
    assert rssi_dbm(byte, "auto") == rssi_dbm(byte, "2024")
