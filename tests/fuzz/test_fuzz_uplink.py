"""F1 for what arrives from the network: GB/T 26875.3 frames from the centre (gateway/uplink/gb26875/
frame.py), signed downlink commands (gateway/uplink/commands.py) and control-socket requests
(gateway/control/protocol.py).

Properties: encode -> decode round-trips (in any chunking for the stream deframer); random and mutated
input raises only FrameError / CommandRejected / msgspec.DecodeError; a mutated signed command that still
verifies says exactly what was signed (no field can be changed without the key).
"""

from __future__ import annotations

import datetime as dt
import json

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.control.protocol import Request, decode_request, encode
from gateway.errors import CommandRejected, FrameError
from gateway.uplink.commands import Verifier, sign_command
from gateway.uplink.gb26875 import frame as gb
from tests.fuzz.support import FUZZ, chunk_sizes, feed_chunked, mutated, only

NOW = 1_790_000_000
KEY_HEX = "11" * 32
GW = "gw-courtyard-7"

gb_frames = st.builds(
    gb.Frame,
    serial=st.integers(0, gb.MAX_SERIAL),
    command=st.sampled_from(list(gb.Command)),
    source=st.integers(0, gb.MAX_ADDRESS),
    destination=st.integers(0, gb.MAX_ADDRESS),
    time=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)).map(lambda t: t.replace(microsecond=0)),
    data=st.binary(max_size=300),
)


@FUZZ
@given(gb_frames)
def test_gb26875_frame_round_trips(frame):
    assert gb.decode(gb.encode(frame)) == frame


@FUZZ
@given(st.lists(st.one_of(gb_frames.map(gb.encode), st.binary(max_size=40)), max_size=6), chunk_sizes)
def test_gb26875_deframer_finds_the_same_frames_in_any_chunking(parts, sizes):
    stream = b"".join(parts)
    whole = only(gb.Deframer().feed(stream), gb.Frame)
    assert only(feed_chunked(gb.Deframer().feed, stream, sizes), gb.Frame) == whole


@FUZZ
@given(st.data(), chunk_sizes)
def test_gb26875_mutated_frames_give_only_frames_or_frame_errors(data, sizes):
    good = gb.encode(data.draw(gb_frames))
    bad = data.draw(mutated(good))
    d = gb.Deframer()
    out = feed_chunked(d.feed, bad, sizes)
    assert all(isinstance(i, gb.Frame | FrameError) for i in out)
    for f in only(out, gb.Frame):
        assert gb.encode(f) in bad  # a checksum-valid frame really on the wire, nothing invented
    try:
        gb.decode(bad)
    except FrameError:
        pass


def verifier() -> Verifier:
    return Verifier(GW, {"ops": KEY_HEX}, 120, ManualClock(NOW, synced=True))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=12,
)
commands = st.fixed_dictionaries({
    "command": st.sampled_from(("silence", "ack", "poll", "get_status", "reboot")),
    "args": st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    "issued_at": st.integers(NOW - 100, NOW + 100),
    "nonce": st.text(min_size=1, max_size=64),
})


@pytest.mark.slow  # over 5 s (issue 16)
@FUZZ
@given(commands)
def test_signed_command_round_trips_through_the_verifier(c):
    payload = sign_command("ops", KEY_HEX, GW, c["command"], c["args"], issued_at=c["issued_at"], nonce=c["nonce"])
    cmd = verifier().verify(payload)
    assert (cmd.command, cmd.args, cmd.issued_at, cmd.nonce, cmd.gateway_id) == (c["command"], c["args"], c["issued_at"], c["nonce"], GW)


@pytest.mark.slow  # over 5 s (issue 16)
@FUZZ
@given(st.data())
def test_a_mutated_command_is_rejected_or_says_exactly_what_was_signed(data):
    c = data.draw(commands)
    payload = sign_command("ops", KEY_HEX, GW, c["command"], c["args"], issued_at=c["issued_at"], nonce=c["nonce"], cmd_id="c1")
    bad = data.draw(mutated(payload))
    try:
        cmd = verifier().verify(bad)
    except CommandRejected as exc:
        assert exc.reason in {"oversized", "malformed", "unsigned", "unknown_key", "bad_signature", "wrong_gateway", "stale", "future"}
        return
    assert (cmd.id, cmd.command, cmd.args, cmd.issued_at, cmd.nonce) == ("c1", c["command"], c["args"], c["issued_at"], c["nonce"])


@pytest.mark.slow  # over 5 s (issue 16)
@FUZZ
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_random_command_payloads_raise_only_command_rejected(payload):
    try:
        verifier().verify(payload)
    except CommandRejected:
        return
    raise AssertionError("an unsigned random payload verified")


@pytest.mark.slow  # over 5 s (issue 16)
@FUZZ
@given(st.text(max_size=30), st.integers(-(2**63), 2**63 - 1), st.dictionaries(st.text(max_size=10), json_values, max_size=3))
def test_control_request_round_trips(cmd, rid, args):
    line = encode(Request(cmd, rid, args)).strip()
    assert decode_request(line) == Request(cmd, rid, args)


@pytest.mark.slow  # over 5 s (issue 16)
@FUZZ
@given(st.data())
def test_control_request_garbage_raises_only_decode_error(data):
    good = encode(Request("status", 7, {"verbose": True})).strip()
    line = data.draw(st.one_of(st.binary(max_size=400), mutated(good), json_values.map(lambda v: json.dumps(v).encode())))
    try:
        req = decode_request(line)
    except msgspec.DecodeError:  # ValidationError is a DecodeError: the server answers "malformed"
        return
    assert isinstance(req, Request) and isinstance(req.cmd, str) and isinstance(req.args, dict)
