"""The modem simulators behave as documented (drivers/cellular/simmodem.py `Faults`, simnbiot, simsms), seen
through the product's own AtChannel and status queries on a real pty: echo on/off, every fault knob, the
NSO socket dialect with its corrupt-NSORF faults, network loss URCs, NITZ time, PDU-mode CMGS with the
prompt and its 27.005 errors. Each fault is injected once and must leave the next command working.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import structlog

from drivers.cellular import info, status
from drivers.cellular.at import Urc
from drivers.cellular.channel import AtChannel, at_counters
from drivers.cellular.commands import Timeouts
from drivers.cellular.pdu import encode_submit
from drivers.cellular.simmodem import AtModemSim
from drivers.cellular.simnbiot import NbiotModemSim
from drivers.cellular.simsms import SmsModemSim
from gateway.clock import ManualClock
from gateway.errors import DeviceTimeout, FrameError, ModemError, ModemUnavailable
from tests.support.wait import async_wait_for

# Short silences: the simulator answers at once on a pty, so 0.3 s is already generous.
FAST = Timeouts(query_s=0.5, slow_s=2.0, sms_s=5.0)


@dataclass
class Line:
    """The host side: an AtChannel on the pty plus everything its callbacks saw."""

    ch: AtChannel
    sim: AtModemSim
    urcs: list[Urc] = field(default_factory=list)
    reboots: list[str] = field(default_factory=list)
    lost: list[object] = field(default_factory=list)

    def counters(self) -> dict[str, int]:
        return dict(at_counters(self.ch))


@contextlib.asynccontextmanager
async def line(tmp_path, sim: AtModemSim) -> AsyncIterator[Line]:
    path = str(tmp_path / "modem")
    await sim.start(path)
    host = Line(AtChannel(structlog.get_logger("test"), FAST, lambda u: host.urcs.append(u),
                          lambda b: host.reboots.append(b), lambda e: host.lost.append(e)), sim)
    await host.ch.open(path, 115200)
    try:
        yield host
    finally:
        host.ch.close()
        await asyncio.wait_for(sim.stop(), 10)


# ---- AT line discipline through the simulator ------------------------------------------------------------

async def test_echo_is_on_at_power_up_and_ate0_turns_it_off(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        assert await h.ch.command("AT") == ()
        assert h.counters()["at_echo_lines"] == 1  # the echoed "AT" was recognised, not taken as an answer
        await h.ch.command("ATE0")
        assert await h.ch.command("AT+CGSN=1") == (f"+CGSN:{h.sim.imei}",)
        assert h.counters()["at_echo_lines"] == 2  # ATE0 itself was still echoed; nothing after it
        assert h.sim.commands == ["AT", "ATE0", "AT+CGSN=1"]


async def test_error_next_gives_a_cme_error_once(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        h.sim.faults.error_next = "+CME ERROR:159"
        with pytest.raises(ModemError) as info_:
            await h.ch.command("AT+CSQ")
        assert info_.value.kind == "CME" and info_.value.code == 159 and info_.value.busy
        assert await h.ch.command("AT") == ()  # one-shot


async def test_without_cmee_errors_are_bare_and_with_it_numbered(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        with pytest.raises(ModemError) as bare:
            await h.ch.command("AT+NOSUCH")
        assert bare.value.kind == "" and bare.value.code is None
        await h.ch.command("AT+CMEE=1")
        with pytest.raises(ModemError) as numbered:
            await h.ch.command("AT+NOSUCH")
        assert (numbered.value.kind, numbered.value.code) == ("CME", 4)  # 27.007: operation not supported


async def test_silent_modem_times_out_and_the_channel_recovers(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        h.sim.faults.silent = True
        with pytest.raises(DeviceTimeout):
            await h.ch.command("AT+CSQ")
        h.sim.faults.silent = False
        assert await h.ch.command("AT") == ()
        assert h.counters()["at_timeouts"] == 1


async def test_truncated_answer_times_out_and_its_lines_are_not_given_to_the_next_command(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await h.ch.command("ATE0")
        h.sim.faults.truncate_next = True
        with pytest.raises(DeviceTimeout):
            await h.ch.command("AT+CGSN=1")
        # The answer stopped before its final OK: its information line must not be carried over.
        assert await h.ch.command("AT+CGSN=1") == (f"+CGSN:{h.sim.imei}",)
        assert h.counters()["at_timeouts"] == 1


async def test_reboot_mid_command_fails_it_reports_the_banner_and_restores_power_on_state(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await h.ch.command("ATE0")
        await h.ch.command("AT+CMEE=1")
        h.sim.faults.reboot_next_command = True
        with pytest.raises(ModemUnavailable):
            await h.ch.command("AT+CSQ")
        assert "REBOOT_CAUSE_UNKNOWN" in h.reboots and h.sim.reboots == 1
        # Power-on defaults again: echo back on, CMEE off (a bare ERROR), radio off.
        with pytest.raises(ModemError) as exc:
            await h.ch.command("AT+NOSUCH")
        assert exc.value.kind == ""
        assert h.counters()["at_echo_lines"] >= 2
        assert await h.ch.command("AT+CEREG?") == ("+CEREG:0,0",)


async def test_nrb_answers_rebooting_then_the_banner_arrives_as_evidence(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        assert await h.ch.command("AT+NRB") == ("REBOOTING",)
        await async_wait_for(lambda: "REBOOT_CAUSE_APPLICATION_AT" in h.reboots, 5, what="NRB banner")
        assert h.sim.reboots == 1


async def test_loose_urcs_inside_responses_are_routed_and_answers_stay_intact(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        h.sim.faults.strict_urc = False
        for _ in range(30):  # each answer gets a URC inserted with probability 1/2
            lines = await h.ch.command("AT+NUESTATS")
            assert len(lines) == 11 and info.nuestats(lines)["signal_power"] == -1063
        assert h.urcs and all(u.prefix in ("+CSCON", "+NPSMR") for u in h.urcs)


async def test_garbage_and_urc_noise_never_reach_an_answer(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        h.sim.faults.garbage_period_s = h.sim.faults.urc_period_s = 0.005
        await async_wait_for(lambda: h.counters().get("at_garbage_lines", 0) >= 3 and h.urcs, 10, what="noise on the line")
        for _ in range(20):
            assert await h.ch.command("AT+CGSN=1") == (f"+CGSN:{h.sim.imei}",)


async def test_unplugged_port_fails_the_command_in_flight_and_reports_the_loss(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await h.ch.command("AT")
        h.sim.faults.silent = True
        pending = asyncio.create_task(h.ch.command("AT+CFUN=1"))  # slow command: 2 s silence allowed
        await async_wait_for(lambda: "AT+CFUN=1" in h.sim.commands, 5, what="command on the wire")
        h.sim.close_port()
        with pytest.raises(ModemUnavailable):
            await asyncio.wait_for(pending, 5)
        await async_wait_for(lambda: h.lost, 5, what="connection_lost")
        with pytest.raises(ModemUnavailable):
            await h.ch.command("AT")


# ---- NB-IoT module (BC95 NSO dialect) -------------------------------------------------------------------

async def _bring_up(h: Line) -> None:
    for cmd in ("ATE0", "AT+CMEE=1", "AT+CEREG=2", "AT+CFUN=1"):
        await h.ch.command(cmd)
    h.sim.register_delay_s = 0.05  # type: ignore[attr-defined]
    st = status.ModemStatus()
    await async_wait_for(lambda: h.sim.stat == 1, 5, what="registered")  # type: ignore[attr-defined]
    assert await status.read_registration(h.ch, st) == 1 and st.registered


async def test_status_queries_read_what_the_nbiot_module_reports(tmp_path):
    nitz = 1_780_000_000.0
    async with line(tmp_path, NbiotModemSim(nitz_utc=nitz)) as h:
        await _bring_up(h)
        st, clock = status.ModemStatus(), ManualClock()
        await status.read_registration(h.ch, st)
        await status.read_sim(h.ch, st)
        await status.read_identity(h.ch, st)
        assert (st.sim, st.imei, st.iccid, st.imsi) == ("ready", h.sim.imei, "89860317452052012345", "460111234567890")
        assert await status.read_attach(h.ch, st) and await status.read_address(h.ch, st) == "10.168.3.17"
        await status.read_radio(h.ch, st)
        assert (st.csq_dbm, st.ber) == (-79, 99) and st.radio["ecl"] == 0 and st.radio["snr"] == 92
        assert await status.read_network_time(h.ch, st, clock) == nitz
        assert st.as_dict()["registration"] == "home"


async def test_missing_sim_is_reported_as_absent(tmp_path):
    sim = NbiotModemSim()
    sim.sim_present = False
    async with line(tmp_path, sim) as h:
        await h.ch.command("AT+CMEE=1")
        st = status.ModemStatus()
        with pytest.raises(ModemUnavailable, match="absent"):
            await status.read_sim(h.ch, st)
        assert st.sim == "absent"
        await status.read_identity(h.ch, st)  # each identity command fails: fields stay empty
        assert st.imei == h.sim.imei and st.iccid == "" and st.imsi == ""


async def test_network_loss_and_denial_arrive_as_cereg_urcs(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await _bring_up(h)
        seen = len(h.urcs)
        h.sim.set_network("none")
        await async_wait_for(lambda: any(u.line == "+CEREG:2" for u in h.urcs[seen:]), 5, what="+CEREG:2")
        assert info.cereg_stat(h.urcs[-1].line, urc=True) == 2  # 27.007: 2 = searching
        assert await h.ch.command("AT+CSQ") == ("+CSQ:99,99",)
        h.sim.set_network("denied")
        await async_wait_for(lambda: any(u.line == "+CEREG:3" for u in h.urcs[seen:]), 5, what="+CEREG:3")
        assert not h.sim.deliver("10.0.0.9", 40001, b"\x01")  # nothing reaches a socket while unregistered


async def _socket(h: Line) -> int:
    (sid,) = await h.ch.command("AT+NSOCR=DGRAM,17,5683,1")
    return int(sid)


async def test_a_delivered_datagram_is_announced_and_read_back_exactly(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await _bring_up(h)
        sid = await _socket(h)
        assert h.sim.deliver("10.168.3.101", 40001, bytes(range(20)))
        await async_wait_for(lambda: any(u.prefix == "+NSONMI" for u in h.urcs), 5, what="+NSONMI")
        assert info.nsonmi(h.urcs[-1].line) == (sid, 20)
        (answer,) = await h.ch.command(f"AT+NSORF={sid},1358")
        assert info.nsorf(answer) == info.Datagram(sid, "10.168.3.101", 40001, bytes(range(20)), 0)
        assert await h.ch.command(f"AT+NSORF={sid},1358") == ()  # nothing left: just OK


async def test_two_queued_datagrams_report_what_remains(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await _bring_up(h)
        sid = await _socket(h)
        h.sim.deliver("10.168.3.101", 40001, b"\xaa" * 5)
        h.sim.deliver("10.168.3.102", 40002, b"\xbb" * 7)
        first = info.nsorf((await h.ch.command(f"AT+NSORF={sid},1358"))[0])
        second = info.nsorf((await h.ch.command(f"AT+NSORF={sid},1358"))[0])
        assert (first.remaining, second.remaining) == (7, 0) and second.data == b"\xbb" * 7


async def test_nsonmi_mode_2_pushes_the_data_in_the_urc(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await _bring_up(h)
        await _socket(h)
        await h.ch.command("AT+NSONMI=2")
        h.sim.deliver("10.168.3.101", 40001, b"\x01\x02\x03")
        await async_wait_for(lambda: any(u.prefix == "+NSONMI" for u in h.urcs), 5, what="+NSONMI mode 2")
        assert h.urcs[-1].line == "+NSONMI:0,10.168.3.101,40001,3,010203"


@pytest.mark.parametrize("fault", ["odd_hex", "len_mismatch", "socket7", "non_hex"])
async def test_each_corrupt_nsorf_fault_is_rejected_by_the_parser_once(tmp_path, fault):
    async with line(tmp_path, NbiotModemSim()) as h:
        await _bring_up(h)
        sid = await _socket(h)
        h.sim.bad_nsorf = fault
        h.sim.deliver("10.168.3.101", 40001, b"\x10\x20\x30\x40")
        h.sim.deliver("10.168.3.101", 40001, b"\x10\x20\x30\x40")
        (bad,) = await h.ch.command(f"AT+NSORF={sid},1358")
        with pytest.raises(FrameError):
            info.nsorf(bad)
        (good,) = await h.ch.command(f"AT+NSORF={sid},1358")
        assert info.nsorf(good).data == b"\x10\x20\x30\x40"


async def test_remaining_stuck_never_reaches_zero(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await _bring_up(h)
        sid = await _socket(h)
        h.sim.remaining_stuck = True
        h.sim.deliver("10.168.3.101", 40001, b"\x01")
        assert info.nsorf((await h.ch.command(f"AT+NSORF={sid},1358"))[0]).remaining == 7
        assert await h.ch.command(f"AT+NSORF={sid},1358") == ()  # the lie is in the number, not the data


async def test_nsost_is_recorded_and_send_busy_answers_159_first(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await _bring_up(h)
        sid = await _socket(h)
        h.sim.send_busy = 1
        with pytest.raises(ModemError) as exc:
            await h.ch.command(f"AT+NSOST={sid},10.168.3.101,40001,2,ABCD")
        assert exc.value.busy
        assert await h.ch.command(f"AT+NSOST={sid},10.168.3.101,40001,2,ABCD") == (f"{sid},2",)
        assert [(s.ip, s.port, s.data) for s in h.sim.sent] == [("10.168.3.101", 40001, b"\xab\xcd")]
        with pytest.raises(ModemError):  # length disagrees with the hex: refused, nothing sent
            await h.ch.command(f"AT+NSOST={sid},10.168.3.101,40001,3,ABCD")
        assert len(h.sim.sent) == 1


async def test_sockets_need_registration_and_a_free_port(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await h.ch.command("AT+CMEE=1")
        with pytest.raises(ModemError) as exc:  # not registered yet
            await h.ch.command("AT+NSOCR=DGRAM,17,5683,1")
        assert exc.value.code == 3
        await _bring_up(h)
        sid = await _socket(h)
        with pytest.raises(ModemError):  # the same listen port twice
            await h.ch.command("AT+NSOCR=DGRAM,17,5683,1")
        await h.ch.command(f"AT+NSOCL={sid}")
        with pytest.raises(ModemError):  # already closed
            await h.ch.command(f"AT+NSOCL={sid}")


# ---- SMS module (EC200 class, PDU mode) -----------------------------------------------------------------

async def _cmgs(h: Line, number: str, text: str) -> list[tuple[str, ...]]:
    return [await h.ch.command_with_payload(f"AT+CMGS={p.tpdu_octets}", p.hex.encode()) for p in encode_submit(number, text)]


async def test_sms_module_records_a_concatenated_message_and_answers_each_part(tmp_path):
    async with line(tmp_path, SmsModemSim()) as h:
        await h.ch.command("AT+CMEE=1")
        await h.ch.command("AT+CMGF=0")
        answers = await _cmgs(h, "+8613800138000", "火警" * 40)  # 80 UCS2 units: two parts
        assert answers == [("+CMGS: 1",), ("+CMGS: 2",)]
        assert h.sim.texts() == [("+8613800138000", "火警" * 40)]
        assert [r.concat[1:] for r in h.sim.sms if r.concat] == [(2, 1), (2, 2)]


async def test_sms_errors_follow_27005(tmp_path):
    async with line(tmp_path, SmsModemSim()) as h:
        await h.ch.command("AT+CMEE=1")
        await h.ch.command("AT+CMGF=1")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ModemError) as text_mode:  # PDU length in text mode: refused instead of a prompt
            await _cmgs(h, "+8613800138000", "火警")
        assert (text_mode.value.kind, text_mode.value.code) == ("CMS", 304)
        assert loop.time() - t0 < FAST.sms_s  # the refusal ends the command, not the prompt timeout
        await h.ch.command("AT+CMGF=0")
        (pdu,) = encode_submit("+8613800138000", "火警")
        with pytest.raises(ModemError) as wrong_length:  # <length> must count the TPDU octets exactly
            await h.ch.command_with_payload(f"AT+CMGS={pdu.tpdu_octets + 1}", pdu.hex.encode())
        assert wrong_length.value.code == 304
        h.sim.set_network("none")
        with pytest.raises(ModemError) as no_service:
            await _cmgs(h, "+8613800138000", "火警")
        assert no_service.value.code == 331  # no network service
        h.sim.set_network("ok")
        h.sim.cms_error_next = 500
        with pytest.raises(ModemError) as unknown:
            await _cmgs(h, "+8613800138000", "火警")
        assert unknown.value.code == 500
        assert await _cmgs(h, "+8613800138000", "火警") == [("+CMGS: 1",)]  # one-shot; the message reference starts at 1
        assert h.sim.texts() == [("+8613800138000", "火警")]


async def test_sms_module_banner_after_a_reboot_is_reboot_evidence(tmp_path):
    async with line(tmp_path, SmsModemSim()) as h:
        await h.ch.command("AT")
        h.sim.reboot()
        await async_wait_for(lambda: len(h.reboots) >= 3, 5, what="RDY, +CFUN: 1, +CPIN: READY")
        assert h.reboots[:3] == ["REBOOT_CAUSE_SECURITY_RESET_PIN", "RDY", "+CFUN: 1"] or "RDY" in h.reboots
        assert await h.ch.command("AT+CPIN?") == ("+CPIN: READY",)  # asked for: an answer, not evidence


async def test_a_late_answer_after_a_timeout_is_never_taken_for_the_next_command(tmp_path):
    async with line(tmp_path, NbiotModemSim()) as h:
        await h.ch.command("ATE0")
        h.sim.faults.silent = True
        with pytest.raises(DeviceTimeout):
            await h.ch.command("AT+CGSN=1")
        h.sim.faults.silent = False
        h.sim.write_raw(b"\r\n+CGSN:490154203237518\r\n\r\nOK\r\n")  # the timed-out command's answer, late
        assert await h.ch.command("AT+CSQ") == ("+CSQ:99,99",)  # its own answer, not the late one
        assert await h.ch.command("AT+CGSN=1") == (f"+CGSN:{h.sim.imei}",)


async def test_a_failing_urc_handler_is_counted_and_the_line_discipline_goes_on(tmp_path):
    sim = NbiotModemSim()
    path = str(tmp_path / "modem")
    await sim.start(path)

    def broken(_urc: Urc) -> None:
        raise RuntimeError("handler bug")

    ch = AtChannel(structlog.get_logger("test"), FAST, broken, lambda b: None)
    await ch.open(path, 115200)
    try:
        sim.urc("+CSCON:1")
        await async_wait_for(lambda: ch.counters["handler_errors"] == 1, 5, what="handler error counted")
        assert await ch.command("AT+CGSN=1") == (f"+CGSN:{sim.imei}",)
    finally:
        ch.close()
        await asyncio.wait_for(sim.stop(), 10)
    with pytest.raises(ModemUnavailable, match="not open"):
        await ch.command("AT")
