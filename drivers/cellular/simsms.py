"""Simulated LTE Cat-1 SMS module (Quectel EC200 class; Quectel LTE spacing: a space after the colon):
SIM, registration, PDU-mode AT+CMGS with the `>` prompt, and a record of every SMS asked for."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from drivers.cellular.pdu import decode_submit
from drivers.cellular.simcall import VoiceSim
from drivers.cellular.simmodem import AtModemSim


@dataclass
class SmsRecord:
    command: str  # exact "AT+CMGS=19"
    pdu_hex: str  # exact bytes written after the prompt (without Ctrl-Z)
    number: str  # decoded, for humans
    text: str
    concat: tuple[int, int, int] | None  # (reference, total, sequence)
    reference: int  # the +CMGS: <mr> we answered


class SmsModemSim(AtModemSim):
    banner = ("RDY", "+CFUN: 1", "+CPIN: READY", "+QIND: SMS DONE")
    urc_noise = ('+QIND: "csq",20,99',)

    def __init__(self, baud: int = 0, echo: bool = True) -> None:
        super().__init__(baud, echo)
        self.imei = "866123045678906"
        self.sim_present = True
        self.network = "ok"  # "ok" | "none" | "denied"
        self.send_delay_s = 0.05  # real modules: seconds (protocols.md §1.5)
        self.cms_error_next = 0  # answer the next CMGS with +CMS ERROR: <n>
        self.sms: list[SmsRecord] = []
        self._mr = 0
        self.voice = VoiceSim(self)  # scripted callees: ATD / ATH / +CLCC / +QTTS / +QTONEDET (issue 22)
        self.reset_state()

    def texts(self) -> list[tuple[str, str]]:
        """(number, whole text) per message, concatenated parts joined (for humans and tests)."""
        out: list[tuple[str, str]] = []
        for r in self.sms:
            if r.concat is None or r.concat[2] == 1:
                out.append((r.number, r.text))
            else:
                out[-1] = (out[-1][0], out[-1][1] + r.text)
        return out

    def set_network(self, network: str) -> None:
        self.network = network
        stat = self._stat()
        if self.cereg_n:
            self.urc(f"+CEREG: {stat}")

    def reset_state(self) -> None:
        if hasattr(self, "voice"):
            self.voice.reset()  # a reboot drops the call in progress
        self.cmee = False
        self.cmgf = 0
        self.cereg_n = 0

    def _stat(self) -> int:
        return {"ok": 1, "none": 2, "denied": 3}[self.network] if self.sim_present else 0

    def _err(self, code: int, kind: str = "CME") -> tuple[list[str], str]:
        return [], f"+{kind} ERROR: {code}" if self.cmee else "ERROR"

    def handle(self, cmd: str) -> tuple[list[str], str]:
        c = cmd.upper()
        if c in ("AT", "AT+CMEE=1"):
            self.cmee = self.cmee or c == "AT+CMEE=1"
            return [], "OK"
        if c in ("AT+CPIN?", "AT+QCCID", "AT+CIMI"):
            if not self.sim_present:
                return self._err(10)
            return {"AT+CPIN?": ["+CPIN: READY"], "AT+QCCID": ["+QCCID: 89860121801234567890"],
                    "AT+CIMI": ["460015123456789"]}[c], "OK"
        if c == "AT+CGSN":
            return [self.imei], "OK"
        if c == "AT+CSQ":
            return ["+CSQ: 20,99" if self._stat() == 1 else "+CSQ: 99,99"], "OK"
        if m := re.fullmatch(r"AT\+C(E?)REG=([0-2])", c):
            self.cereg_n = int(m.group(2))
            return [], "OK"
        if m := re.fullmatch(r"AT\+C(E?)REG\?", c):
            return [f"+C{m.group(1)}REG: {self.cereg_n},{self._stat()}"], "OK"
        if m := re.fullmatch(r"AT\+CMGF=([01])", c):
            self.cmgf = int(m.group(1))
            return [], "OK"
        if (voice := self.voice.handle(cmd)) is not None:
            return voice
        if m := re.fullmatch(r"AT\+CMGS=(\d+)", c):
            if self.cmgf != 0:
                return self._err(304, "CMS")  # invalid PDU mode parameter: we are in text mode
            return self.prompt(cmd)
        return self._err(4)

    def handle_payload(self, cmd: str, payload: str) -> tuple[list[str], str]:
        n = int(cmd.split("=", 1)[1])
        try:
            decoded = decode_submit(payload)
            octets = len(bytes.fromhex(payload)) - 1 - bytes.fromhex(payload[:2])[0]
        except (ValueError, IndexError):
            return self._err(304, "CMS")
        if octets != n:
            return self._err(304, "CMS")  # 27.005: the length must count the TPDU octets exactly
        if self._stat() not in (1, 5):
            return self._err(331, "CMS")
        if self.cms_error_next:
            code, self.cms_error_next = self.cms_error_next, 0
            return self._err(code, "CMS")
        self._mr = (self._mr + 1) & 0xFF
        self.sms.append(SmsRecord(cmd, payload, decoded.number, decoded.text, decoded.concat, self._mr))
        mr = self._mr
        self.spawn(self._later([f"+CMGS: {mr}"], "OK"), "cmgs")
        return [], ""

    async def _later(self, lines: list[str], final: str) -> None:
        await asyncio.sleep(self.send_delay_s)
        self._answer((lines, final))
