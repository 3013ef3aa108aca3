"""F1 for the cellular path: the sans-IO AT line parser (drivers/cellular/at.py) and the NB-IoT smoke
datagram codec (drivers/codecs/nbiot_smoke.py, also covered with every codec in test_fuzz_lora.py).

Properties: a scripted modem answer (echo, URCs, info lines, final) gives the same Done and URCs in any
chunking; random and mutated modem bytes never raise out of feed(), give only the documented outputs, and
keep the line buffer bounded; datagrams round-trip and a damaged one is CodecError, never anything else.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.cellular.at import (
    MAX_LINE_CHARS,
    AtCommand,
    AtParser,
    Done,
    Prompt,
    Reboot,
    Urc,
)
from drivers.codecs import CodecMeta
from drivers.codecs import nbiot_smoke as nb
from gateway.errors import CodecError, GatewayError
from gateway.model import Stamp
from tests.fuzz.support import FUZZ, chunk_sizes, feed_chunked, mutated

CSQ = AtCommand("AT+CSQ", prefix="+CSQ")
EOL = st.sampled_from((b"\r\n", b"\r\r\n", b"\n", b"\r"))
URCS = st.sampled_from((b"+CEREG: 1", b"+NSONMI: 1,12", b"+CSCON: 0", b"+NPSMR: 1", b"+CTZV: 26/11/29,03:00:00+32"))
META = CodecMeta("smoke-1", Stamp(1_790_000_000.0, "b", 1, True), "nbiot-modem")


@st.composite
def answers(draw) -> tuple[bytes, list[bytes], list[bytes], bytes]:
    """(wire bytes, info lines, urc lines, final) for one AT+CSQ exchange with URCs interleaved."""
    info = [b"+CSQ: %d,99" % draw(st.integers(0, 31)) for _ in range(draw(st.integers(0, 2)))]
    final = draw(st.sampled_from((b"OK", b"ERROR", b"+CME ERROR: 10", b"+CMS ERROR: 500")))
    urcs_before, urcs_after = draw(st.lists(URCS, max_size=3)), draw(st.lists(URCS, max_size=3))
    lines = [b"AT+CSQ", *urcs_before, *info, final, *urcs_after]
    wire = b"".join(draw(EOL) + line + draw(EOL) for line in lines)
    return wire, info, urcs_before + urcs_after, final


def run(data: bytes, sizes: list[int], command: AtCommand | None = CSQ) -> tuple[AtParser, list]:
    p = AtParser()
    if command is not None:
        p.begin(command)
    return p, feed_chunked(p.feed, data, sizes)


@pytest.mark.slow  # over 5 s (issue 16)
@FUZZ
@given(answers(), chunk_sizes)
def test_a_modem_answer_parses_identically_in_any_chunking(answer, sizes):
    wire, info, urcs, final = answer
    p, out = run(wire, sizes)
    done = [o for o in out if isinstance(o, Done)]
    assert len(done) == 1 and p.in_flight is None
    assert done[0].lines == tuple(line.decode() for line in info)
    assert (done[0].error is None) == (final == b"OK")
    assert [o.line for o in out if isinstance(o, Urc)] == [u.decode() for u in urcs]
    assert [repr(o) for o in out] == [repr(o) for o in run(wire, [len(wire)])[1]]  # exceptions compare by identity


@FUZZ
@given(st.binary(max_size=6000), chunk_sizes, st.booleans())
def test_random_modem_bytes_never_raise_and_stay_bounded(noise, sizes, in_flight):
    p, out = run(noise, sizes, CSQ if in_flight else None)
    assert all(isinstance(o, Done | Urc | Reboot | Prompt) for o in out)
    assert all(o.error is None or isinstance(o.error, GatewayError) for o in out if isinstance(o, Done))
    assert len(p._buf) <= MAX_LINE_CHARS + 32  # at most one read past the limit before it is cut


@FUZZ
@given(st.data(), chunk_sizes)
def test_mutated_answers_never_raise_and_finish_at_most_once(data, sizes):
    wire = data.draw(answers())[0]
    _, out = run(data.draw(mutated(wire)), sizes)
    assert all(isinstance(o, Done | Urc | Reboot | Prompt) for o in out)
    assert len([o for o in out if isinstance(o, Done)]) <= 1  # one command in flight, one completion


@FUZZ
@given(st.sampled_from(sorted(nb.TYPES)), st.integers(0, 0xFFFF), st.integers(0, 0x3F), st.integers(0, 5000),
       st.integers(-128, 127))
def test_nbiot_datagram_round_trips_or_is_refused_with_codec_error(msg_type, seq, flags, mv, temp):
    fault = 1 if msg_type in (nb.FAULT, getattr(nb, "FAULT_CLEARED", nb.FAULT)) else 0
    try:
        payload = nb.encode("861234567890123", msg_type, seq, flags=flags, fault_code=fault, battery_mv=mv, temperature_c=temp)
        reading, event = nb.decode(payload, META)
    except CodecError:
        return
    assert reading.values["seq"] == seq and event.detail == {"seq": seq, "imei": "861234567890123"}
    assert nb.parse_ack(nb.ack(payload)) == (msg_type, seq)


@FUZZ
@given(st.data())
def test_damaged_nbiot_datagrams_raise_only_codec_error(data):
    good = nb.encode("861234567890123", data.draw(st.sampled_from(sorted(nb.TYPES))), data.draw(st.integers(0, 0xFFFF)),
                     fault_code=1)
    bad = data.draw(mutated(good))
    try:
        nb.decode(bad, META)
        nb.ack(bad)
    except CodecError:
        pass
