"""RTU/MBAP framing: CRC vectors from a real transmitter's manual, chunked and noisy streams."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.framing import MbapParser, Request, RtuFrame, RtuParser, crc16, mbap_adu, parse_reply, rtu_adu
from gateway.errors import FrameError, ModbusDeviceError

# protocols.md §3.1: read `01 03 00 04 00 01 C5 CB` -> `01 03 02 13 88 B5 12` (5000).
REQ = bytes.fromhex("010300040001C5CB")
REPLY = bytes.fromhex("0103021388B512")


def test_request_adu_matches_the_transmitter_manual():
    assert rtu_adu(1, Request(1, 3, 4, 1).pdu()) == REQ
    assert crc16(REQ[:-2]).to_bytes(2, "little") == REQ[-2:]


def test_reply_parsed_one_byte_at_a_time():
    p = RtuParser()
    out = []
    for b in REPLY:
        out += p.feed(bytes([b]))
    assert out == [RtuFrame(1, bytes.fromhex("03021388"))]
    assert parse_reply(Request(1, 3, 4, 1), out[0].pdu) == [5000]


def test_garbage_before_a_frame_is_reported_and_the_frame_still_found():
    out = RtuParser().feed(b"\x00\xff\x13" + REPLY)
    frames = [o for o in out if isinstance(o, RtuFrame)]
    errors = [o for o in out if isinstance(o, FrameError)]
    assert frames == [RtuFrame(1, bytes.fromhex("03021388"))]
    assert len(errors) == 1 and errors[0].data == b"\x00\xff\x13"


def test_bad_crc_is_reported_as_bad_crc_without_waiting_for_more():
    out = RtuParser().feed(REPLY[:-1] + b"\x00")
    assert [o.reason for o in out if isinstance(o, FrameError)] == ["bad_crc"]
    assert not [o for o in out if isinstance(o, RtuFrame)]


def test_buffer_is_bounded_on_endless_noise():
    p = RtuParser()
    for _ in range(50):
        p.feed(b"\x01\x03\xff" * 40)
    assert len(p.buf) <= 256


@given(st.binary(max_size=600), st.integers(1, 64))
def test_feed_never_raises_on_any_bytes(data, chunk):
    p = RtuParser()
    for i in range(0, len(data), chunk):
        p.feed(data[i : i + chunk])
    s = RtuParser(server=True)
    s.feed(data)
    MbapParser().feed(data)


def test_exception_reply_raises_modbus_device_error_with_its_code():
    with pytest.raises(ModbusDeviceError) as exc:
        parse_reply(Request(7, 3, 0, 2), b"\x83\x02")
    assert exc.value.exception_code == 2 and exc.value.unit == 7
    assert "illegal data address" in str(exc.value)


def test_byte_count_that_disagrees_with_the_request_is_rejected():
    with pytest.raises(FrameError):
        parse_reply(Request(1, 3, 0, 2), bytes.fromhex("03021388"))  # asked 2 registers, got 1
    with pytest.raises(FrameError):
        parse_reply(Request(1, 3, 0, 1), bytes.fromhex("0402ffff"))  # other function code


def test_write_requests_and_echo_check():
    coil_on = Request(1, 5, 0, 1, (1,))
    assert coil_on.pdu() == bytes.fromhex("050000ff00")  # MAP §6.5: FF00 = on
    assert parse_reply(coil_on, coil_on.pdu()) == []
    with pytest.raises(FrameError):
        parse_reply(coil_on, bytes.fromhex("0500000000"))
    regs = Request(1, 16, 10, 2, (1, 0xFFFF))
    assert regs.pdu() == bytes.fromhex("10000a0002040001ffff")
    assert parse_reply(regs, bytes.fromhex("10000a0002")) == []
    coils = Request(1, 15, 0, 10, (1, 0, 1, 1, 0, 0, 1, 1, 1, 0))
    assert coils.pdu() == bytes.fromhex("0f0000000a02cd01")  # MAP §6.11 example


def test_request_parser_finds_write_multiple_frames():
    adu = rtu_adu(3, Request(3, 16, 10, 2, (1, 2)).pdu())
    out = RtuParser(server=True).feed(adu[:5]) + RtuParser(server=True).feed(adu)
    assert [o for o in out if isinstance(o, RtuFrame)] == [RtuFrame(3, adu[1:-2])]


def test_mbap_frames_and_broken_header():
    p = MbapParser()
    adu = mbap_adu(7, 1, b"\x03\x02\x13\x88")
    out = p.feed(adu[:3]) + p.feed(adu[3:] + adu)
    assert [(f.tid, f.unit, f.pdu) for f in out] == [(7, 1, b"\x03\x02\x13\x88")] * 2
    out = p.feed(b"\x00\x01\xff\xff\x00\x05\x01\x03\x00\x00\x00")
    assert isinstance(out[0], FrameError) and p.broken
