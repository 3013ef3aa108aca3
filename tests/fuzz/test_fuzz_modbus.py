"""F1 for Modbus framing (drivers/modbus/framing.py): RTU and MBAP stream framers and reply checking.

Properties: a valid ADU round-trips; random or mutated bytes give only RtuFrame/MbapFrame/FrameError items
(never an exception); reads of 1-32 bytes find exactly the frames one big read finds; the buffer stays
bounded; parse_reply raises only FrameError or ModbusDeviceError.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.framing import (
    RTU_MAX_BYTES,
    MbapFrame,
    MbapParser,
    Request,
    RtuFrame,
    RtuParser,
    mbap_adu,
    pack_bits,
    parse_reply,
    rtu_adu,
)
from gateway.errors import FrameError, ModbusDeviceError
from tests.fuzz.support import FUZZ, chunk_sizes, feed_chunked, mutated, only

units = st.integers(1, 247)
regs = st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125)


@st.composite
def read_replies(draw) -> tuple[Request, bytes]:
    """A read request and the RTU reply a healthy slave sends to it."""
    unit, fc = draw(units), draw(st.sampled_from((1, 2, 3, 4)))
    if fc in (3, 4):
        values = draw(regs)
        data = b"".join(v.to_bytes(2, "big") for v in values)
    else:
        values = draw(st.lists(st.booleans(), min_size=1, max_size=2000))
        data = pack_bits(values)
    req = Request(unit, fc, draw(st.integers(0, 0xFFFF)), len(values))
    return req, rtu_adu(unit, bytes([fc, len(data)]) + data)


@FUZZ
@given(read_replies())
def test_valid_reply_round_trips_through_parser_and_reply_check(case):
    req, adu = case
    (frame,) = RtuParser().feed(adu)
    assert isinstance(frame, RtuFrame) and frame.unit == req.unit
    values = parse_reply(req, frame.pdu)
    if req.function in (3, 4):
        assert len(values) == req.count and all(0 <= v <= 0xFFFF for v in values)
    else:
        assert len(values) == req.count


@FUZZ
@given(st.binary(max_size=600), st.booleans())
def test_random_bytes_yield_only_frames_or_frame_errors_and_a_bounded_buffer(noise, server):
    p = RtuParser(server=server)
    out = p.feed(noise)
    assert all(isinstance(i, RtuFrame | FrameError) for i in out)
    assert len(p.buf) <= RTU_MAX_BYTES
    for f in only(out, RtuFrame):  # anything accepted was on the wire with a good CRC
        assert rtu_adu(f.unit, f.pdu) in noise


@FUZZ
@given(st.data())
def test_mutated_replies_never_yield_a_frame_with_a_bad_crc(data):
    req, adu = data.draw(read_replies())
    bad = data.draw(mutated(adu))
    p = RtuParser()
    for f in only(p.feed(bad), RtuFrame):
        assert rtu_adu(f.unit, f.pdu) in bad  # only CRC-valid bytes that were on the wire
        try:
            parse_reply(req, f.pdu)
        except (FrameError, ModbusDeviceError):
            pass


@FUZZ
@given(st.lists(st.one_of(read_replies().map(lambda c: c[1]), st.binary(max_size=40)), max_size=12), chunk_sizes)
def test_chunked_feeding_finds_the_same_frames_as_one_read(parts, sizes):
    stream = b"".join(parts)
    whole = only(RtuParser().feed(stream), RtuFrame)
    chunked = only(feed_chunked(RtuParser().feed, stream, sizes), RtuFrame)
    assert chunked == whole


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), units, st.binary(min_size=1, max_size=253)), max_size=10), chunk_sizes)
def test_mbap_round_trips_in_any_chunking(frames, sizes):
    stream = b"".join(mbap_adu(tid, unit, pdu) for tid, unit, pdu in frames)
    got = feed_chunked(MbapParser().feed, stream, sizes)
    assert got == [MbapFrame(tid, unit, pdu) for tid, unit, pdu in frames]


@FUZZ
@given(st.binary(max_size=600), chunk_sizes)
def test_mbap_random_bytes_yield_frames_or_one_error_then_nothing(noise, sizes):
    p = MbapParser()
    out = feed_chunked(p.feed, noise, sizes)
    assert all(isinstance(i, MbapFrame | FrameError) for i in out)
    errors = only(out, FrameError)
    assert len(errors) <= 1  # a broken header ends the stream: the driver closes the connection
    if errors:
        assert p.broken and out[-1] is errors[0]
    assert len(p.buf) <= 6 + 254


@FUZZ
@given(st.sampled_from((1, 2, 3, 4, 5, 6, 15, 16)), st.binary(max_size=300))
def test_parse_reply_raises_only_documented_errors(fc, pdu):
    values = (1,) * 3 if fc in (15, 16) else (1,)
    req = Request(1, fc, 0, 3 if fc in (15, 16) else 1, values if fc in (5, 6, 15, 16) else ())
    try:
        parse_reply(req, pdu)
    except (FrameError, ModbusDeviceError):
        pass
