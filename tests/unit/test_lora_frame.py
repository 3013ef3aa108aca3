"""The LoRa frame deframer: glued, split, garbage, RSSI bytes, long payloads across sub-packets, bad MIC."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.lora import frame as fr
from drivers.lora.frame import Deframer, Frame, FrameType, encode, sub_packets
from gateway.errors import FrameError

KEY = bytes(range(16))
DEV, PLAIN = 0x01020304, 0x0A0B0C0D
KEYS = {DEV: KEY, PLAIN: fr.KEYLESS}


def wire(frame: bytes, rssi: int | None = 0xB0, sp: int = 240) -> bytes:
    """What the receiving module prints: each sub-packet followed by its RSSI byte."""
    return b"".join(p + (bytes([rssi]) if rssi is not None else b"") for p in sub_packets(frame, sp))


def frames(items):
    return [i for i in items if isinstance(i, Frame)]


def errors(items):
    return [i.reason for i in items if isinstance(i, FrameError)]


def test_frame_bytes_are_exactly_the_documented_layout():
    f = encode(DEV, 0x1234, FrameType.REPORT, b"\x01\x02", KEY)
    assert f[:10] == bytes.fromhex("a5 01 02 04030201 3412 01")
    assert f[10:12] == b"\x01\x02" and len(f) == 16
    k = encode(PLAIN, 1, FrameType.REPORT, b"", None)
    assert k[1] == 0x81 and len(k) == 12  # keyless flag, CRC-16 trailer


def test_one_frame_with_rssi_byte_decodes_with_dbm():
    d = Deframer(KEYS)
    (got,) = d.feed(wire(encode(DEV, 5, FrameType.REPORT, b"hello", KEY), rssi=0xB0))
    assert got == Frame(DEV, 5, FrameType.REPORT, b"hello", rssi_dbm=-80, wire_bytes=20)
    assert d.pending == 0


def test_two_frames_glued_in_one_read():
    d = Deframer(KEYS)
    data = wire(encode(DEV, 1, FrameType.REPORT, b"a", KEY)) + wire(encode(PLAIN, 2, FrameType.REPORT, b"b", None))
    got = frames(d.feed(data))
    assert [(f.device_id, f.fcnt, f.payload) for f in got] == [(DEV, 1, b"a"), (PLAIN, 2, b"b")]


def test_frame_split_one_byte_at_a_time():
    d = Deframer(KEYS)
    data = wire(encode(DEV, 9, FrameType.REPORT, b"split me", KEY))
    out = []
    for b in data:
        out += d.feed(bytes([b]))
    assert [f.payload for f in frames(out)] == [b"split me"] and not errors(out)


def test_garbage_before_between_and_a5_inside_payload_resync():
    d = Deframer(KEYS)
    f1 = wire(encode(DEV, 1, FrameType.REPORT, b"\xa5\xa5\x01\xa5", KEY))
    f2 = wire(encode(DEV, 2, FrameType.REPORT, b"x", KEY))
    noise = b"\x00\xa5\x01\x33\xff\xa5"
    out = d.feed(noise + f1 + noise + f2)
    assert [f.fcnt for f in frames(out)] == [1, 2]
    assert d.discarded_bytes == 2 * len(noise)
    assert d.frame_bytes + d.discarded_bytes == 2 * len(noise) + len(f1) + len(f2)


def test_bad_mic_is_rejected_and_counted_and_next_frame_survives():
    d = Deframer(KEYS)
    bad = bytearray(encode(DEV, 1, FrameType.REPORT, b"alarm", KEY))
    bad[11] ^= 0x01  # one bit flipped in the payload
    out = d.feed(wire(bytes(bad)) + wire(encode(DEV, 2, FrameType.REPORT, b"ok", KEY)))
    assert "bad_mic" in errors(out) and [f.payload for f in frames(out)] == [b"ok"]
    assert d.rejects["bad_mic"] == 1


def test_wrong_key_fails_mic():
    d = Deframer({DEV: bytes(16)})
    assert errors(d.feed(wire(encode(DEV, 1, FrameType.REPORT, b"x", KEY)))).count("bad_mic") == 1


def test_keyed_device_never_accepts_a_crc_frame():
    # A forger without the key must not be able to downgrade to CRC-16.
    d = Deframer(KEYS)
    out = d.feed(wire(encode(DEV, 1, FrameType.REPORT, b"alarm", None)))
    assert not frames(out) and "keying_mismatch" in errors(out)


def test_unknown_device_is_rejected_early():
    d = Deframer(KEYS)
    out = d.feed(wire(encode(0x55, 1, FrameType.REPORT, b"x", KEY)))
    assert not frames(out) and "unknown_device" in errors(out)


def test_listen_mode_shows_unknown_keyed_frames_unverified():
    d = Deframer({}, listen=True)
    (got,) = frames(d.feed(wire(encode(0x55, 1, FrameType.REPORT, b"x", KEY))))
    assert got.device_id == 0x55 and got.verified is False


def test_encrypted_payload_is_decrypted():
    d = Deframer(KEYS)
    raw = encode(DEV, 77, FrameType.REPORT, b"secret smoke", KEY, encrypt=True)
    assert b"secret smoke" not in raw
    (got,) = frames(d.feed(wire(raw)))
    assert got.payload == b"secret smoke" and got.encrypted


def test_payload_longer_than_a_sub_packet_arrives_split_with_rssi_per_packet():
    d = Deframer(KEYS)
    payload = bytes(random.Random(1).randrange(256) for _ in range(250))
    raw = encode(DEV, 3, FrameType.REPORT, payload, KEY)
    assert len(raw) == 264
    data = sub_packets(raw)[0] + b"\xc0" + sub_packets(raw)[1] + b"\xa0"
    (got,) = frames(d.feed(data))
    assert got.payload == payload and got.rssi_dbm == -96  # the weaker of the two sub-packets


@pytest.mark.parametrize("sp", [128, 64, 32])
def test_smaller_sub_packet_settings(sp):
    d = Deframer(KEYS, sub_packet=sp)
    raw = encode(DEV, 3, FrameType.REPORT, bytes(200), KEY)
    assert frames(d.feed(wire(raw, sp=sp)))[0].payload == bytes(200)


def test_rssi_byte_present_when_config_says_absent_is_discarded_not_fatal():
    d = Deframer(KEYS, rssi=False)
    data = wire(encode(DEV, 1, FrameType.REPORT, b"a", KEY)) + wire(encode(DEV, 2, FrameType.REPORT, b"b", KEY))
    assert [f.fcnt for f in frames(d.feed(data))] == [1, 2]
    assert d.discarded_bytes == 2


def test_truncated_frame_expires_and_the_frame_hidden_behind_it_is_found():
    d = Deframer(KEYS)
    cut = wire(encode(DEV, 1, FrameType.REPORT, bytes(30), KEY))[:20]
    good = wire(encode(DEV, 2, FrameType.REPORT, b"ok", KEY))
    out = d.feed(cut + good)
    assert not frames(out)  # the cut frame's length swallows the good one until the line goes quiet
    out = d.expire()
    assert [f.fcnt for f in frames(out)] == [2] and "truncated" in errors(out) and d.pending == 0


def test_bad_version_and_bad_type_are_counted():
    d = Deframer(KEYS)
    d.feed(b"\xa5\x02\x00")
    raw = bytearray(encode(PLAIN, 1, FrameType.REPORT, b"", None))
    raw[9] = 0x42
    raw[-2:] = fr.crc16(bytes(raw[:-2])).to_bytes(2, "little")
    d.feed(wire(bytes(raw)))
    assert d.rejects["bad_version"] == 1 and d.rejects["bad_type"] == 1


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 40), max_size=30))
def test_random_bytes_never_raise_and_every_byte_is_accounted(noise, cuts):
    d = Deframer(KEYS)
    good = wire(encode(DEV, 4, FrameType.REPORT, b"after noise", KEY))
    data, at = noise + good, 0
    out = []
    for n in cuts + [len(noise + good)]:
        out += d.feed(data[at: at + n])
        at += n
    out += d.expire()
    assert d.pending == 0
    assert d.frame_bytes + d.discarded_bytes == len(data)
    assert d.frames == len(frames(out))
    assert any(f.payload == b"after noise" for f in frames(out))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=255), st.integers(1, 0xFFFFFFFE), st.integers(0, 0xFFFF), st.booleans(), st.booleans())
def test_encode_then_deframe_round_trips(payload, dev, fcnt, keyed, encrypt):
    key = KEY if keyed else None
    d = Deframer({dev: key})
    (got,) = d.feed(wire(encode(dev, fcnt, FrameType.REPORT, payload, key, encrypt and keyed)))
    assert (got.device_id, got.fcnt, got.payload) == (dev, fcnt, payload)
