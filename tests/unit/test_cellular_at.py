"""The sans-IO AT parser: command/response matching with URCs anywhere, finals, errors, line discipline."""

from __future__ import annotations

import random

import pytest

from drivers.cellular.at import AtCommand, AtParser, Done, Prompt, Reboot, Urc, fields
from drivers.cellular.commands import Timeouts, command_for
from gateway.errors import ModemError, ModemUnavailable

T = Timeouts()


def run(parser: AtParser, text: str, data: bytes) -> list:
    parser.begin(command_for(text, T)[0])
    return parser.feed(data)


def done(out: list) -> Done:
    (d,) = [o for o in out if isinstance(o, Done)]
    return d


def test_prefixed_answer_with_and_without_space():
    p = AtParser()
    assert done(run(p, "AT+CSQ", b"\r\n+CSQ:17,99\r\n\r\nOK\r\n")).lines == ("+CSQ:17,99",)
    assert done(run(p, "AT+CSQ", b"\r\n+CSQ: 17,99\r\n\r\nOK\r\n")).lines == ("+CSQ: 17,99",)
    assert fields("+CSQ:17,99", "+CSQ") == fields("+CSQ: 17,99", "+CSQ") == ["17", "99"]


def test_echo_on_is_skipped_and_urc_between_echo_and_response_is_routed():
    p = AtParser()
    out = run(p, "AT+CSQ", b"AT+CSQ\r\r\n+NSONMI:0,20\r\n\r\n+CSQ:17,99\r\n\r\nOK\r\n")
    assert out[0] == Urc("+NSONMI", "+NSONMI:0,20")
    assert done(out).lines == ("+CSQ:17,99",) and done(out).error is None
    assert p.counters["echo_lines"] == 1


def test_bare_socket_id_is_matched_by_the_command_not_by_shape():
    p = AtParser()
    assert done(run(p, "AT+NSOCR=DGRAM,17,5683,1", b"\r\n0\r\n\r\nOK\r\n")).lines == ("0",)
    # The same bare "0" with no command in flight is not an answer to anything.
    assert p.feed(b"\r\n0\r\n") == [] and p.counters["unexpected_lines"] == 1


def test_urc_right_after_ok_and_inside_response():
    p = AtParser()
    out = run(p, "AT+NUESTATS", b"\r\nSignal power:-1063\r\n\r\n+CEREG:2\r\n\r\nECL:0\r\n\r\nOK\r\n\r\n+CSCON:0\r\n")
    assert done(out).lines == ("Signal power:-1063", "ECL:0")
    assert [o.line for o in out if isinstance(o, Urc)] == ["+CEREG:2", "+CSCON:0"]


def test_second_cereg_in_a_cereg_answer_is_a_urc():
    out = run(AtParser(), "AT+CEREG?", b"\r\n+CEREG:2,1\r\n\r\n+CEREG:2\r\n\r\nOK\r\n")
    assert done(out).lines == ("+CEREG:2,1",) and Urc("+CEREG", "+CEREG:2") in out


@pytest.mark.parametrize(("wire", "kind", "code", "busy"), [
    (b"\r\nERROR\r\n", "", None, False),
    (b"\r\n+CME ERROR:159\r\n", "CME", 159, True),
    (b"\r\n+CME ERROR: 536\r\n", "CME", 536, True),
    (b"\r\n+CME ERROR:537\r\n", "CME", 537, True),
    (b"\r\n+CME ERROR:10\r\n", "CME", 10, False),
    (b"\r\n+CMS ERROR: 331\r\n", "CMS", 331, False),
])
def test_final_errors_become_modem_errors(wire, kind, code, busy):
    err = done(run(AtParser(), "AT+NSOST=0,1.2.3.4,5,1,00", wire)).error
    assert isinstance(err, ModemError) and (err.kind, err.code, err.busy) == (kind, code, busy)
    assert "AT+NSOST" in str(err)


def test_crcrlf_and_nul_bytes_and_byte_at_a_time():
    p = AtParser()
    p.begin(command_for("AT+CGPADDR", T)[0])
    out = []
    for b in b"\x00\x00\r\r\n+CGPADDR:0,10.1.2.3\r\r\n\x00\r\nOK\r\n":
        out += p.feed(bytes([b]))
    assert done(out).lines == ("+CGPADDR:0,10.1.2.3",)


def test_2716_char_line_is_legal_and_over_cap_is_rejected_and_counted():
    p = AtParser()
    line = "0,10.0.0.1,40001,1358," + "AB" * 1358 + ",0"
    assert done(run(p, "AT+NSORF=0,1358", f"\r\n{line}\r\n\r\nOK\r\n".encode())).lines == (line,)
    out = run(p, "AT+CSQ", b"\r\n" + b"7" * 5000 + b"\r\n+CSQ:5,99\r\n\r\nOK\r\n")
    assert done(out).lines == ("+CSQ:5,99",) and p.counters["line_too_long"] == 1


def test_utf8_garbage_is_never_a_response_line():
    p = AtParser()
    out = run(p, "AT+CIMI", "\r\n火警\r\n\r\n460111234567890\r\n\r\nOK\r\n".encode())
    assert done(out).lines == ("460111234567890",) and p.counters["garbage_lines"] == 1


@pytest.mark.parametrize("banner", ["REBOOT_CAUSE_SECURITY_RESET_PIN", "Neul ", "RDY", "+CPIN: READY", "+CFUN: 1"])
def test_reboot_evidence_mid_command_fails_the_command_and_reports(banner):
    out = run(AtParser(), "AT+CSQ", f"\r\n{banner}\r\n".encode())
    assert isinstance(done(out).error, ModemUnavailable)
    assert Reboot(banner.strip()) in out


def test_cpin_asked_for_is_an_answer_not_reboot_evidence():
    out = run(AtParser(), "AT+CPIN?", b"\r\n+CPIN:READY\r\n\r\nOK\r\n")
    assert done(out).lines == ("+CPIN:READY",) and not [o for o in out if isinstance(o, Reboot)]


def test_nrb_ends_on_rebooting_then_banner_is_evidence():
    p = AtParser()
    out = run(p, "AT+NRB", b"\r\nREBOOTING\r\n")
    assert done(out).error is None
    assert Reboot("REBOOT_CAUSE_APPLICATION_AT") in p.feed(b"\r\nREBOOT_CAUSE_APPLICATION_AT\r\nNeul \r\nOK\r\n")
    assert p.counters["stray_finals"] == 1  # the banner's OK answers nothing


def test_prompt_for_cmgs():
    p = AtParser()
    assert Prompt() in run(p, "AT+CMGS=19", b"\r\n> ")
    assert done(p.feed(b"\r\n+CMGS: 12\r\n\r\nOK\r\n")).lines == ("+CMGS: 12",)


def test_truncated_line_then_abort_drops_it_and_counts():
    p = AtParser()
    assert run(p, "AT+CSQ", b"\r\n+CSQ:1") == []
    p.abort()
    assert p.counters["partial_discarded"] == 1 and p.in_flight is None
    assert p.feed(b"\r\nOK\r\n") == [] and p.counters["stray_finals"] == 1


def test_one_command_in_flight():
    p = AtParser()
    p.begin(AtCommand("AT"))
    with pytest.raises(RuntimeError):
        p.begin(AtCommand("AT+CSQ"))


def test_ten_thousand_random_lines_never_raise_or_wedge():
    rng = random.Random(6)
    p = AtParser()
    pieces = [b"OK", b"ERROR", b"+CME ERROR:159", b"+NSONMI:0,12", b"0", b"REBOOT_CAUSE_X", b"+CSQ:17,99", b"> ",
              b"\x00", "火".encode(), b"\xff\xfe", b"+CMS ERROR: 500", b"AT+CSQ", b"0,1.2.3.4,5,2,ABCD,0"]
    for i in range(10_000):
        if p.in_flight is None and rng.random() < 0.5:
            p.begin(command_for(rng.choice(["AT+CSQ", "AT+NSORF=0,1358", "AT+CMGS=19", "AT"]), T)[0])
        n = rng.randrange(1, 4)
        blob = b"".join(rng.choice(pieces) + rng.choice([b"\r\n", b"\r\r\n", b"\r", b""]) for _ in range(n))
        if rng.random() < 0.1:
            blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        p.feed(blob)
        if rng.random() < 0.02:
            p.abort()
    p.abort()
    # Still in step afterwards: a clean command is answered normally.
    assert done(run(p, "AT+CSQ", b"\r\n+CSQ:9,99\r\n\r\nOK\r\n")).lines == ("+CSQ:9,99",)


def test_call_words_and_voice_urcs_are_urcs_even_during_a_voice_command():
    """Issue 22: NO CARRIER / BUSY outside ATD, and +QTTS: 0 / +QTONEDET: 49 while AT+QTTS is in flight."""
    p = AtParser()
    cmd, _ = command_for('AT+QTTS=1,"6D4B"', Timeouts())
    p.begin(cmd)
    out = p.feed(b"\r\n+QTTS: 0\r\n\r\n+QTONEDET: 49\r\nOK\r\n\r\nNO CARRIER\r\n")
    assert out[:2] == [Urc("+QTTS", "+QTTS: 0"), Urc("+QTONEDET", "+QTONEDET: 49")]
    assert isinstance(out[2], Done) and out[2].lines == () and out[3] == Urc("NO CARRIER", "NO CARRIER")
    dial, _ = command_for("ATD+8613800000005;", Timeouts())
    p.begin(dial)
    (done,) = p.feed(b"\r\nBUSY\r\n")
    assert isinstance(done, Done) and done.lines == ("BUSY",) and done.error is None
