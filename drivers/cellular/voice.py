"""One outgoing voice call on the EC200 (issue 22): dial, follow the call state with +CLCC and the call
progress words, speak the text with the module's TTS (AT+QTTS), take the acknowledgement key from its DTMF
detector (+QTONEDET), hang up. Run by the SMS driver, which owns the port and queues calls with its SMS,
so a module never carries two calls and an SMS waits for the call to end (drivers/cellular/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger

from drivers.base import CallOutcome
from drivers.cellular.at import CALL_WORDS, Urc, fields
from drivers.cellular.channel import AtChannel
from gateway.errors import FrameError, GatewayError, ModemUnavailable

ACK_KEY = "1"  # "确认请按1"
POLL_S = 0.5  # +CLCC while the callee's phone rings; the state changes at network pace (seconds)
TTS_S_PER_CHAR = 0.35  # Chinese TTS speaks about 3 characters a second; a cap, not a wait
URC_QUEUE_MAX = 64
# 27.007 §7.18 +CLCC <stat>: 0 active, 1 held, 2 dialing (MO), 3 alerting (MO), 4 incoming, 5 waiting.
CLCC_ACTIVE, CLCC_DIALING, CLCC_ALERTING = 0, 2, 3
ENDED_BEFORE_ANSWER = {"BUSY": "busy", "NO ANSWER": "no_answer", "NO CARRIER": "rejected", "NO DIALTONE": "failed"}


def ucs2_hex(text: str) -> str:
    """AT+QTTS=1 takes the text as UCS2 big-endian hex, so Chinese needs no character set setting."""
    return text.encode("utf-16-be").hex().upper()


class CallSession:
    """Feed it the module's URCs (`on_urc`) while `run(ch)` places the call; `abort` when the module is gone."""

    def __init__(self, number: str, text: str, ring_timeout_s: float, key_wait_s: float, log: FilteringBoundLogger,
                 preemptible: bool = False) -> None:
        self.number, self.text = number, text
        self.preemptible = preemptible  # an urgent SMS may end it (a lower alarm's call; never an SOS)
        self.ring_timeout_s, self.key_wait_s = ring_timeout_s, key_wait_s
        self.log = log
        self._urcs: asyncio.Queue[Urc | None] = asyncio.Queue(URC_QUEUE_MAX)
        self._ended = ""  # the call progress word that ended the call
        self._key = ""
        self._aborted = ""
        self.preempted = False  # an urgent SMS asked for the module: end the call at the next wait
        self.dropped_urcs = 0

    # ---- fed by the driver -----------------------------------------------------------------------
    def on_urc(self, urc: Urc) -> None:
        if urc.prefix in CALL_WORDS or urc.prefix in ("+QTTS", "+QTONEDET"):
            try:
                self._urcs.put_nowait(urc)
            except asyncio.QueueFull:
                self.dropped_urcs += 1

    def preempt(self) -> bool:
        """Hang up at the next wait (at most POLL_S while ringing; the TTS command returns at once) so the
        module can send an urgent SMS; run() returns CallOutcome("preempted"). True when this asked for it
        now: False for a call that is not preemptible or was asked already."""
        if not self.preemptible or self.preempted:
            return False
        self.preempted = True
        with contextlib.suppress(asyncio.QueueFull):
            self._urcs.put_nowait(None)
        return True

    def abort(self, reason: str) -> None:
        self._aborted = reason
        with contextlib.suppress(asyncio.QueueFull):
            self._urcs.put_nowait(None)

    # ---- the call --------------------------------------------------------------------------------
    async def run(self, ch: AtChannel) -> CallOutcome:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await ch.command("AT+QTONEDET=1")  # DTMF detection on: keys come as +QTONEDET: <ASCII code>
        lines = await ch.command(f"ATD{self.number};")
        if lines and lines[-1] in CALL_WORDS:
            return CallOutcome(ENDED_BEFORE_ANSWER.get(lines[-1], "failed"), detail=lines[-1])
        try:
            if not await self._until_answered(ch, start):
                return CallOutcome("no_answer", ring_s=round(loop.time() - start, 1))  # hung up below
            if self.preempted:
                return CallOutcome("preempted", ring_s=round(loop.time() - start, 1))
            if self._ended:
                return CallOutcome(ENDED_BEFORE_ANSWER.get(self._ended, "failed"), ring_s=round(loop.time() - start, 1), detail=self._ended)
            ring_s = round(loop.time() - start, 1)
            self.log.info("call_answered", ring_s=ring_s)
            await ch.command(f'AT+QTTS=1,"{ucs2_hex(self.text)}"')
            await self._wait(lambda u: u.prefix == "+QTTS", len(self.text) * TTS_S_PER_CHAR + 5)
            if not self._key and not self._ended and not self.preempted:
                await self._wait(lambda u: False, self.key_wait_s)
            if self.preempted and not self._key:
                return CallOutcome("preempted", ring_s=ring_s, detail="answered")
            result = "acknowledged" if self._key == ACK_KEY else "answered"
            return CallOutcome(result, key=self._key if result == "acknowledged" else "", ring_s=ring_s, detail=self._ended)
        finally:
            if not self._ended and not self._aborted:
                await self._hangup(ch)

    async def _until_answered(self, ch: AtChannel, start: float) -> bool:
        """True once the call is active (or ended: see _ended); False when ring_timeout_s passed."""
        loop = asyncio.get_running_loop()
        while loop.time() - start < self.ring_timeout_s:
            state = await self._clcc(ch)
            if state == CLCC_ACTIVE:
                return True
            if state is None and not self._ended:
                self._ended = "NO CARRIER"  # the call is gone without a word: declined or dropped
            if self._ended or self.preempted:
                return True
            await self._wait(lambda u: False, POLL_S)
        return False

    async def _clcc(self, ch: AtChannel) -> int | None:
        """Our call's <stat>, None when the module lists no call."""
        for line in await ch.command("AT+CLCC"):
            try:
                f = fields(line, "+CLCC")
                if len(f) >= 3 and f[1] == "0":  # dir 0: mobile originated, ours
                    return int(f[2])
            except (FrameError, ValueError):
                continue
        return None

    async def _wait(self, done: Callable[[Urc], bool], timeout_s: float) -> None:
        """Take URCs until `done(urc)`, the ack key, the call's end or the timeout."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not self._key and not self._ended and not self.preempted:
            if self._aborted:
                raise ModemUnavailable(self._aborted)
            left = end - loop.time()
            if left <= 0:
                return
            try:
                async with asyncio.timeout(left):  # not wait_for: gh-86296 on 3.11
                    urc = await self._urcs.get()
            except TimeoutError:
                return
            if urc is None:
                continue  # the abort sentinel: raised at the top of the loop
            if urc.prefix in CALL_WORDS and urc.prefix != "RING":
                self._ended = urc.prefix
            elif urc.prefix == "+QTONEDET":
                self._take_key(urc.line)
            if done(urc):
                return

    def _take_key(self, line: str) -> None:
        try:
            code = int(fields(line, "+QTONEDET")[0])
        except (FrameError, ValueError, IndexError):
            return
        key = chr(code) if 32 < code < 127 else ""
        self.log.info("call_key", key=key)
        if key == ACK_KEY:
            self._key = key

    async def _hangup(self, ch: AtChannel) -> None:
        with contextlib.suppress(GatewayError):
            await ch.command("ATH")
