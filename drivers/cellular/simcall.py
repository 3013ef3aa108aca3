"""The voice half of the simulated EC200 (issue 22): each number a scripted callee that answers after N
rings, is busy, declines, never answers, presses a key after hearing the message, or whose call is cut by a
module reboot. Answers ATD / ATH / AT+CLCC / AT+QTTS / AT+QTONEDET as the module does; used by SmsModemSim.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.cellular.simsms import SmsModemSim


@dataclass
class Callee:
    """What the person at `number` does. answer_after_rings None: never answers (the phone rings on)."""

    answer_after_rings: int | None = 2
    busy: bool = False
    decline: bool = False  # rejects the call while it rings (NO CARRIER)
    key: str = ""  # DTMF key pressed after hearing the message once ("" = listens and hangs up nothing)
    hang_up_after_message: bool = False
    reboot_on_answer: bool = False  # the module browns out the moment the call connects


@dataclass
class CallRecord:
    number: str
    outcome: str = "dialling"  # dialling, alerting, active, busy, declined, hung_up, ended_by_gateway, reboot
    spoken: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


class VoiceSim:
    ring_s = 0.05  # one ring; real networks about 5 s

    def __init__(self, modem: SmsModemSim) -> None:
        self.modem = modem
        self.callees: dict[str, Callee] = {}
        self.default = Callee()
        self.calls: list[CallRecord] = []
        self.reset()

    def reset(self) -> None:
        """Power-on: no call, DTMF detection off."""
        self.current: CallRecord | None = None
        self.stat = -1  # +CLCC <stat> of the current call
        self.dtmf_on = False
        self._gen = 0  # a new call (or a reset) makes the old call's timers stale

    def handle(self, cmd: str) -> tuple[list[str], str] | None:
        """The answer to a voice command, or None when `cmd` is not one."""
        c = cmd.upper()
        if m := re.fullmatch(r"ATD(\+?\d{3,20});", c):
            if self.current is not None or self.modem._stat() not in (1, 5):
                return [], "NO CARRIER"
            self._dial(m.group(1))
            return [], "OK"
        if c == "ATH":
            if self.current is not None:
                self._end("ended_by_gateway")
            return [], "OK"
        if c == "AT+CLCC":
            if self.current is None:
                return [], "OK"
            return [f'+CLCC: 1,0,{self.stat},0,0,"{self.current.number}",129'], "OK"
        if m := re.fullmatch(r"AT\+QTONEDET=([01])", c):
            self.dtmf_on = m.group(1) == "1"
            return [], "OK"
        if m := re.fullmatch(r'AT\+QTTS=1,"([0-9A-F]*)"', c):
            if self.current is None or self.stat != 0:
                return [], "+CME ERROR: 3" if self.modem.cmee else "ERROR"
            text = bytes.fromhex(m.group(1)).decode("utf-16-be")
            self.current.spoken.append(text)
            self.modem.spawn(self._after_message(self._gen, text), "tts")
            return [], "OK"
        return None

    def _dial(self, number: str) -> None:
        self._gen += 1
        self.current = CallRecord(number)
        self.calls.append(self.current)
        self.stat = 2
        self.modem.spawn(self._progress(self._gen, self.callees.get(number, self.default)), "call")

    def _end(self, outcome: str, word: str = "") -> None:
        assert self.current is not None
        self.current.outcome = outcome
        self.current, self.stat = None, -1
        self._gen += 1
        if word:
            self.modem.urc(word)

    async def _progress(self, gen: int, who: Callee) -> None:
        await asyncio.sleep(self.ring_s)
        if gen != self._gen:
            return
        if who.busy:
            self._end("busy", "BUSY")
            return
        self.stat, self.current.outcome = 3, "alerting"  # type: ignore[union-attr]
        rings = who.answer_after_rings
        await asyncio.sleep(self.ring_s * (rings if rings is not None else 1))
        if gen != self._gen:
            return
        if who.decline:
            self._end("declined", "NO CARRIER")
        elif rings is not None:
            self.stat, self.current.outcome = 0, "active"  # type: ignore[union-attr]
            if who.reboot_on_answer:
                self.current.outcome = "reboot"  # type: ignore[union-attr]
                self.modem.reboot("RDY")
        # never answering: it rings until the gateway hangs up (ATH)

    async def _after_message(self, gen: int, text: str) -> None:
        """The module says +QTTS: 0 when it has spoken; the callee then presses a key or hangs up."""
        await asyncio.sleep(min(0.2, 0.002 * len(text)))
        if gen != self._gen:
            return
        self.modem.urc("+QTTS: 0")
        who = self.callees.get(self.current.number, self.default) if self.current else self.default
        if who.key and self.current is not None:
            self.current.keys.append(who.key)
            if self.dtmf_on:
                self.modem.urc(f"+QTONEDET: {ord(who.key)}")
        if who.hang_up_after_message and self.current is not None:
            self._end("hung_up", "NO CARRIER")
