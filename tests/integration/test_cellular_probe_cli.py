"""The modem simulators as installers and CI start them (`gateway simulate nbiot|sms-modem --pty LINK ...`,
drivers/cellular/simulator.py) seen through the installer probes (drivers/cellular/probe.py, behind
`gateway modem at|info`), and the status queries against a modem scripted to answer what real firmware
sometimes answers (a +CEREG URC for the answer, a PIN-locked SIM, a clock before NITZ)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from drivers.cellular import probe, status
from drivers.cellular.channel import AtChannel
from drivers.cellular.commands import Timeouts
from drivers.cellular.pdu import encode_submit
from drivers.cellular.simmodem import AtModemSim
from drivers.cellular.simnbiot import make_imei
from gateway.clock import ManualClock
from gateway.errors import FrameError, ModemUnavailable
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def simulator(tmp_path: Path, *args: str):
    """`python -m gateway simulate <args> --pty LINK` until its banner, stopped with SIGINT (Ctrl-C)."""
    link = str(tmp_path / "modem")
    # Ctrl-C must reach it even when pytest itself ignores SIGINT (started with `&` from a script: POSIX
    # shells without job control do that, and a child inherits an ignored signal): each stop waited 10 s.
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "simulate", *args, "--pty", link], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "simulator on" in banner, banner
        wait_for(lambda: os.path.exists(link), 10, what="the simulator's pty link")
        yield link, banner, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_nbiot_simulator_cli_answers_the_probes_with_its_detectors(tmp_path):
    with simulator(tmp_path, "nbiot", "--sensors", "2") as (link, banner, _proc):
        assert make_imei(1) in banner and make_imei(2) in banner
        assert asyncio.run(probe.at(link, "AT+CGSN=1", timeout_s=2.0))[-1] == "OK"
        answer = asyncio.run(probe.at(link, "AT+NOSUCH", timeout_s=2.0))
        assert len(answer) == 1 and answer[0].startswith("error:")  # the modem's refusal, in words
        got = asyncio.run(probe.info(link))
        assert got["sim"] == "ready" and got["imsi"] == "460111234567890" and got["registration"] == "not_searching"
        assert not [k for k in got if k.startswith("error_")], got  # radio off is a state, not an error


def test_nbiot_simulator_cli_without_sim_reports_it_and_keeps_answering(tmp_path):
    with simulator(tmp_path, "nbiot", "--sensors", "0", "--no-sim", "--no-echo") as (link, banner, _proc):
        assert "detectors: none" in banner
        got = asyncio.run(probe.info(link))
        assert got["sim"] == "absent" and "error_sim" in got  # one failed step does not hide the others
        assert got["imei"]  # identity still read


def test_sms_simulator_cli_prints_every_sms_it_is_asked_to_send(tmp_path):
    with simulator(tmp_path, "sms-modem", "--send-delay-s", "0") as (link, _banner, proc):
        async def send() -> None:
            ch = AtChannel(structlog.get_logger("test"), Timeouts(sms_s=5.0), lambda u: None, lambda b: None)
            await ch.open(link, 115200)
            try:
                for part in encode_submit("+8613800000001", "3号楼 燃气报警"):
                    await ch.command_with_payload(f"AT+CMGS={part.tpdu_octets}", part.hex.encode())
            finally:
                ch.close()

        asyncio.run(send())
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("SMS to +8613800000001 part 1: 3号楼 燃气报警"), line


def test_sms_simulator_cli_network_denied_is_visible_to_the_probe(tmp_path):
    with simulator(tmp_path, "sms-modem", "--network", "denied") as (link, _banner, _proc):
        got = asyncio.run(probe.info(link, baud=115200))
        assert got["registration"] == "denied" and got["csq_dbm"] is None


# ---- status queries against scripted firmware answers ------------------------------------------------------

class ScriptedModem(AtModemSim):
    """Answers from a table; a list value is consumed one answer per command (then the last repeats)."""

    def __init__(self, answers: dict[str, object]) -> None:
        super().__init__(echo=False)
        self.answers = answers

    def handle(self, cmd: str) -> tuple[list[str], str]:
        value = self.answers.get(cmd, ([], "ERROR"))
        if isinstance(value, list):
            value = value.pop(0) if len(value) > 1 else value[0]
        return value  # type: ignore[return-value]


@contextlib.asynccontextmanager
async def scripted(tmp_path: Path, answers: dict[str, object]):
    sim = ScriptedModem(answers)
    path = str(tmp_path / "scripted")
    await sim.start(path)
    ch = AtChannel(structlog.get_logger("test"), Timeouts(query_s=1.0), lambda u: None, lambda b: None)
    await ch.open(path, 9600)
    try:
        yield ch, sim
    finally:
        ch.close()
        await asyncio.wait_for(sim.stop(), 10)


async def test_a_cereg_urc_taken_for_the_answer_is_asked_again_once(tmp_path):
    # The URC form "+CEREG:2" landed where the answer "+CEREG:<n>,<stat>" belongs: "2" alone has no stat.
    answers = {"AT+CEREG?": [(["+CEREG:2"], "OK"), (["+CEREG:2,1"], "OK")]}
    async with scripted(tmp_path, answers) as (ch, sim):
        st = status.ModemStatus()
        assert await status.read_registration(ch, st) == 1 and st.registered
        assert sim.commands == ["AT+CEREG?", "AT+CEREG?"]


async def test_registration_that_never_parses_is_a_frame_error_after_two_tries(tmp_path):
    async with scripted(tmp_path, {"AT+CEREG?": (["+CEREG:2"], "OK")}) as (ch, sim):
        with pytest.raises(FrameError):
            await status.read_registration(ch, status.ModemStatus())
        assert len(sim.commands) == 2


async def test_a_pin_locked_sim_is_unavailable_with_advice(tmp_path):
    async with scripted(tmp_path, {"AT+CPIN?": (["+CPIN: SIM PIN"], "OK")}) as (ch, _sim):
        st = status.ModemStatus()
        with pytest.raises(ModemUnavailable, match="reprovisioning"):
            await status.read_sim(ch, st)
        assert st.sim == "locked"


@pytest.mark.parametrize("answer", [(["+CCLK:70/01/01,00:00:45+00"], "OK"), (["+CCLK:garbage"], "OK"), ([], "ERROR")])
async def test_no_network_time_before_nitz(tmp_path, answer):
    async with scripted(tmp_path, {"AT+CCLK?": answer}) as (ch, _sim):
        clock, st = ManualClock(), status.ModemStatus()
        assert await status.read_network_time(ch, st, clock) is None and st.network_time_utc is None


async def test_older_firmware_without_nuestats_still_gives_csq(tmp_path):
    async with scripted(tmp_path, {"AT+CSQ": (["+CSQ:25,99"], "OK"), "AT+NUESTATS": ([], "ERROR")}) as (ch, _sim):
        st = status.ModemStatus()
        await status.read_radio(ch, st)
        assert st.csq_dbm == -63 and st.radio == {}


async def test_identity_lines_with_and_without_prefix(tmp_path):
    answers = {"AT+CGSN": (["866123045678906"], "OK"), "AT+QCCID": (["+QCCID: 89860121801234567890"], "OK"),
               "AT+CIMI": (["460015123456789"], "OK")}
    async with scripted(tmp_path, answers) as (ch, _sim):
        st = status.ModemStatus()
        await status.read_identity(ch, st, imei_cmd="AT+CGSN", iccid_cmd="AT+QCCID")
        assert (st.imei, st.iccid, st.imsi) == ("866123045678906", "89860121801234567890", "460015123456789")


async def test_address_and_attach_while_detached(tmp_path):
    answers = {"AT+CGPADDR": (["+CGPADDR:0"], "OK"), "AT+CGATT?": (["+CGATT:0"], "OK")}
    async with scripted(tmp_path, answers) as (ch, _sim):
        st = status.ModemStatus()
        assert await status.read_address(ch, st) == "" and not await status.read_attach(ch, st)


def test_nbiot_simulator_cli_alarm_after_s_makes_detector_1_report_an_alarm(tmp_path):
    """`--alarm-after-s`: detector 1 sends a smoke alarm datagram that a host reads through the NSO socket."""
    from drivers.cellular import info
    from drivers.cellular.at import Urc
    from drivers.codecs import nbiot_smoke
    from tests.support.wait import async_wait_for

    with simulator(tmp_path, "nbiot", "--sensors", "1", "--alarm-after-s", "1.5") as (link, _banner, _proc):
        async def host() -> bytes:
            urcs: list[Urc] = []
            ch = AtChannel(structlog.get_logger("test"), Timeouts(query_s=2.0, slow_s=5.0), urcs.append, lambda b: None)
            await ch.open(link, 9600)
            try:
                for cmd in ("ATE0", "AT+CMEE=1", "AT+CFUN=1"):
                    await ch.command(cmd)
                st = status.ModemStatus()

                async def registered() -> bool:
                    return await status.read_registration(ch, st) in info.REGISTERED

                for _ in range(50):  # the simulated registration takes a moment
                    if await registered():
                        break
                    await asyncio.sleep(0.1)
                (sid,) = await ch.command("AT+NSOCR=DGRAM,17,5683,1")
                await async_wait_for(lambda: any(u.prefix == "+NSONMI" for u in urcs), 10, what="+NSONMI")
                (line,) = await ch.command(f"AT+NSORF={sid},1358")
                return info.nsorf(line).data
            finally:
                ch.close()

        data = asyncio.run(host())
        head = nbiot_smoke.header(data)
        assert head.imei == make_imei(1) and head.msg_type == nbiot_smoke.ALARM
