"""F1 for the LoRa path: the E22 UART deframer (drivers/lora/frame.py), the module's register answer
(drivers/lora/e22.py) and every sensor payload codec in drivers/codecs/registry.py.

Properties: encode -> deframe round-trips in any chunking; random and mutated UART bytes give only
Frame/FrameError and every byte is accounted for (frame or discarded); a damaged keyed frame is never
accepted with different content (MIC); codecs raise only CodecError and re-encode what they decoded.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.codecs import CodecMeta, gas, manhole, smoke, water_flow
from drivers.codecs.registry import CODECS
from drivers.lora import e22
from drivers.lora.frame import KEYLESS, Deframer, Frame, FrameType, encode, sub_packets
from gateway.errors import CodecError, FrameError
from gateway.model import Stamp
from tests.fuzz.support import FUZZ, chunk_sizes, feed_chunked, mutated, only

KEY = bytes(range(16))
DEV, PLAIN = 0x01020304, 0x0A0B0C0D
KEYS = {DEV: KEY, PLAIN: KEYLESS}
META = CodecMeta("dev-1", Stamp(1_790_000_000.0, "b", 1, True), "lora", rssi_dbm=-80)


def wire(frame: bytes, sp: int = 240) -> bytes:
    """What the receiving module prints: each sub-packet followed by its RSSI byte (REG3 b7)."""
    return b"".join(p + b"\xb0" for p in sub_packets(frame, sp))


@st.composite
def frames(draw) -> tuple[bytes, tuple]:
    keyed = draw(st.booleans())
    dev = DEV if keyed else PLAIN
    fcnt, payload = draw(st.integers(0, 0xFFFF)), draw(st.binary(max_size=255))
    enc = keyed and draw(st.booleans())
    raw = encode(dev, fcnt, FrameType.REPORT, payload, KEY if keyed else None, enc)
    return wire(raw), (dev, fcnt, payload)


def fields(f: Frame) -> tuple:
    return f.device_id, f.fcnt, f.payload


@FUZZ
@given(st.lists(st.one_of(frames(), st.binary(max_size=30).map(lambda b: (b, None))), max_size=8), chunk_sizes)
def test_frames_between_noise_decode_identically_in_any_chunking(parts, sizes):
    stream = b"".join(p for p, _ in parts)
    one = Deframer(KEYS)
    whole = one.feed(stream) + one.expire()
    many = Deframer(KEYS)
    chunked = feed_chunked(many.feed, stream, sizes) + many.expire()
    assert [fields(f) for f in only(chunked, Frame)] == [fields(f) for f in only(whole, Frame)]
    assert many.frame_bytes + many.discarded_bytes == len(stream) and many.pending == 0
    # Every frame we put on the wire is found unless noise right before it looked like a longer frame
    # header that swallowed it; at least the frames not preceded by noise must be there.
    sent = [meta for _, meta in parts if meta is not None]
    got = [fields(f) for f in only(whole, Frame)]
    clean = [meta for i, (_, meta) in enumerate(parts) if meta is not None and (i == 0 or parts[i - 1][1] is not None)]
    assert set(clean) <= set(got) <= set(sent)


@FUZZ
@given(st.binary(max_size=1200), chunk_sizes, st.booleans())
def test_random_uart_bytes_are_rejected_counted_and_bounded(noise, sizes, listen):
    d = Deframer(KEYS, listen=listen)
    out = feed_chunked(d.feed, noise, sizes)
    assert all(isinstance(i, Frame | FrameError) for i in out)
    assert d.pending <= d.max_buffer
    out += d.expire()
    assert d.frame_bytes + d.discarded_bytes == len(noise)
    assert sum(d.rejects.values()) == len(only(out, FrameError))


@FUZZ
@given(st.data())
def test_a_damaged_keyed_frame_is_never_accepted_with_other_content(data):
    fcnt, payload = data.draw(st.integers(0, 0xFFFF)), data.draw(st.binary(max_size=255))
    good = wire(encode(DEV, fcnt, FrameType.REPORT, payload, KEY, data.draw(st.booleans())))
    bad = data.draw(mutated(good))
    d = Deframer({DEV: KEY})
    for f in only(d.feed(bad) + d.expire(), Frame):
        assert fields(f) == (DEV, fcnt, payload)  # only the original, intact, can pass the MIC


@FUZZ
@given(st.binary(max_size=40), st.integers(0, 8), st.integers(1, 9))
def test_e22_register_answer_raises_only_frame_error(data, start, length):
    try:
        regs = e22.parse_answer(data, start, length)
    except FrameError:
        return
    assert regs is None or len(regs) == length


CODEC_MODULES = {"smoke_v1": smoke, "gas_v1": gas, "water_flow_v1": water_flow, "manhole_v1": manhole}


@pytest.mark.parametrize("name", sorted(CODECS))
@FUZZ
@given(payload=st.binary(max_size=64))
def test_every_registered_codec_raises_only_codec_error(name, payload):
    try:
        items = CODECS[name](payload, META)
    except CodecError:
        return
    assert all(i.device_id == META.device_id for i in items)


@pytest.mark.parametrize("name", sorted(CODEC_MODULES))
@FUZZ
@given(payload=st.binary(min_size=4, max_size=16))
def test_codec_parse_encode_parse_is_stable(name, payload):
    mod = CODEC_MODULES[name]
    try:
        report = mod.parse(payload)
    except CodecError:
        return
    assert mod.parse(mod.encode(report)) == report
