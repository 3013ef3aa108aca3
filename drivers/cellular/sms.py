"""The SMS sender (driver "sms_ec200"): an LTE Cat-1 module (Quectel EC200 class) in PDU mode, one message at
a time, recipients in the order asked, rate-limited per recipient and overall.

`await send_sms(number, text)` checks at once that the module is usable (else ModemUnavailable), queues the
message and returns when the module has accepted every part (+CMGS: <mr>): seconds, up to 120 s per part.
Callers that must not wait (the rule engine) run it in their own task, as gateway/actions/escalation.py does;
`submit_sms` returns the future instead. Most operators carry no SMS on NB-IoT (protocols.md §1.5).
`await call(...)` (issue 22, the Caller capability) queues a voice call behind the SMS already waiting:
one job at a time on the module, so never two calls and never an SMS interleaved with a call (voice.py).
An urgent SMS (a fire or gas alarm's) goes before every non-urgent job waiting and ends a preemptible
call in progress (a welfare call, not an SOS one): it waits about a second for the module, not the ~75 s
a call can last; the caller is told "preempted" and calls that contact again.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter, deque
from typing import Any, NamedTuple

from drivers.base import CallOutcome, DriverContext, DriverHealth, DriverState, Emit
from drivers.cellular import info, pdu, status, voice
from drivers.cellular.at import Urc
from drivers.cellular.channel import AtChannel, at_counters
from drivers.cellular.config import SmsPort
from drivers.reopen import FIRST_DELAY_S, Reopen
from gateway.errors import CommandRejected, DeviceTimeout, FrameError, GatewayError, ModemError, ModemUnavailable
from gateway.model import Stamp


class _Job(NamedTuple):
    """One SMS, split into PDU parts."""

    number: str
    text: str
    parts: list[pdu.Pdu]
    done: asyncio.Future[None]


class _CallJob(NamedTuple):
    """A voice call queued with the SMS (issue 22): the module does one thing at a time, in order."""

    number: str
    text: str
    ring_timeout_s: float
    key_wait_s: float
    done: asyncio.Future[CallOutcome]
    preemptible: bool = False


URGENT, NORMAL = 0, 1  # queue ranks: an urgent SMS first, then everything else in arrival order


class SmsDriver:
    name = "sms_ec200"

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx, self.clock, self.log = ctx, ctx.clock, ctx.log
        self.cfg: SmsPort = ctx.port
        self.modem = status.ModemStatus()
        self.counters: Counter[str] = Counter()
        self.state = DriverState.STARTING
        self.last_ok: Stamp | None = None
        # (rank, arrival number, job): urgent SMS first, FIFO within a rank (the number breaks ties).
        self._queue: asyncio.PriorityQueue[tuple[int, int, _Job | _CallJob]] | None = None
        self._arrivals = itertools.count()
        self._urgent_queued = 0  # urgent SMS in the queue
        self._sent_at: dict[str, deque[float]] = {}  # per recipient: monotonic send times, last hour
        self._global: deque[float] = deque()  # all sends, last minute
        self._reference = random.randrange(256)  # 23.040 concatenation reference, per message
        self._channel: AtChannel | None = None
        self._at_totals: Counter[str] = Counter()  # AT counters of closed channels (they survive a reopen)
        self._unavailable = "modem not started yet"
        self._reopen = Reopen(self.log, self.cfg.reopen_cap_s)  # modem reopen backoff and its warn-once report
        self._session: voice.CallSession | None = None  # the call in progress, fed our URCs

    # ---- the action's API ----------------------------------------------------------------------

    async def send_sms(self, number: str, text: str, urgent: bool = False) -> None:
        """Queue one SMS and wait until the module accepted it. Raises ModemUnavailable (absent, SIM,
        not registered), CommandRejected (bad number, rate limit, queue full), ModemError, DeviceTimeout."""
        await self.submit_sms(number, text, urgent)

    def submit_sms(self, number: str, text: str, urgent: bool = False) -> asyncio.Future[None]:
        if self._unavailable:
            raise ModemUnavailable(self._unavailable)
        assert self._queue is not None
        self._check_rate(number)
        self._reference = (self._reference + 1) & 0xFF
        parts = pdu.encode_submit(number, text, pdu.vp_relative(self.cfg.validity_h), self._reference)
        job = _Job(number, text, parts, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait((URGENT if urgent else NORMAL, next(self._arrivals), job))
        except asyncio.QueueFull:
            raise CommandRejected("queue_full", f"{self.cfg.queue_max} SMS already waiting for the module") from None
        self._note_send(number)  # counted when queued, so a burst cannot overshoot the limits
        self.counters["queued"] += 1
        self._urgent_queued += urgent
        if urgent and self._session is not None and self._session.preempt():
            self.log.warning("call_preempted", number=_mask(self._session.number), reason="urgent_sms")  # counted as its outcome
        return job.done

    async def call(self, number: str, text: str, ring_timeout_s: float, key_wait_s: float, preemptible: bool = False) -> CallOutcome:
        """Queue one voice call behind the SMS already waiting and wait for its outcome (Caller capability).
        Raises ModemUnavailable / CommandRejected("queue_full") at once, ModemError / DeviceTimeout later."""
        if self._unavailable:
            raise ModemUnavailable(self._unavailable)
        assert self._queue is not None
        job = _CallJob(number, text, ring_timeout_s, key_wait_s, asyncio.get_running_loop().create_future(), preemptible)
        try:
            self._queue.put_nowait((NORMAL, next(self._arrivals), job))
        except asyncio.QueueFull:
            raise CommandRejected("queue_full", f"{self.cfg.queue_max} jobs already waiting for the module") from None
        self.counters["calls_queued"] += 1
        return await job.done

    async def _call(self, ch: AtChannel, job: _CallJob) -> None:
        """Place one call; SMS queued meanwhile wait in the queue (never lost, never interleaved)."""
        self._session = voice.CallSession(job.number, job.text, job.ring_timeout_s, job.key_wait_s,
                                          self.log.bind(number=_mask(job.number)), job.preemptible)
        if self._urgent_queued:
            self._session.preempt()  # an urgent SMS came while this call was being taken from the queue
        try:
            outcome = await self._session.run(ch)
        except (ModemError, DeviceTimeout, ModemUnavailable) as exc:
            self.counters["calls_failed"] += 1
            self.log.warning("call_failed", number=_mask(job.number), error=str(exc))
            if not job.done.done():
                job.done.set_exception(exc)
            if isinstance(exc, ModemUnavailable):
                raise
            return
        finally:
            self._session = None
        self.counters[f"calls_{outcome.result}"] += 1
        self.log.info("call_ended", number=_mask(job.number), result=outcome.result, ring_s=outcome.ring_s)
        if not job.done.done():
            job.done.set_result(outcome)

    # ---- driver boundary -----------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        self._queue = asyncio.PriorityQueue(self.cfg.queue_max)
        while True:
            ch = AtChannel(self.log, self.cfg.timeouts, self._on_urc, self._on_reboot, None)
            self._channel = ch
            delay_s = FIRST_DELAY_S
            try:
                await ch.open(self.cfg.path, self.cfg.baud)
                await self._bring_up(ch)
                await self._serve(ch)
            except (GatewayError, OSError) as exc:
                self.state = DriverState.DOWN
                self._unavailable = str(exc.reason if isinstance(exc, ModemUnavailable) else exc)
                delay_s = self._reopen.failed("sms_modem_unavailable", exc, path=self.cfg.path)
            finally:
                ch.close()
                self._at_totals.update(at_counters(ch))
                self._fail_queued(ModemUnavailable(self._unavailable or "modem closed"))
            await asyncio.sleep(delay_s)

    def health(self) -> DriverHealth:
        at = self._at_totals + (at_counters(self._channel) if self._channel is not None else Counter())
        counters = {**self.counters, **at}
        detail = {**self.modem.as_dict(), "queued": self._queue.qsize() if self._queue else 0,
                  "unavailable": self._unavailable}
        return DriverHealth(self.state, self.last_ok, counters, detail)

    def info(self) -> dict[str, Any]:
        return self.health().detail

    # ---- session -------------------------------------------------------------------------------

    async def _bring_up(self, ch: AtChannel) -> None:
        self._unavailable = "modem initialising"
        await ch.command("AT")
        for cmd in ("ATE0", "AT+CMEE=1"):
            await ch.command(cmd)
        await status.read_sim(ch, self.modem)
        await status.read_identity(ch, self.modem, imei_cmd="AT+CGSN", iccid_cmd="AT+QCCID")
        await ch.command("AT+CMGF=0")  # PDU mode: UCS2 and concatenation under our control
        await ch.command("AT+CEREG=1")  # +CEREG: <stat> URCs: know at once when SMS cannot go out
        await self._refresh(ch)
        self.state = DriverState.OK if self.modem.registered else DriverState.DEGRADED
        self._reopen.opened("sms_modem_recovered")

    async def _refresh(self, ch: AtChannel) -> None:
        try:
            await status.read_radio(ch, self.modem, nuestats=False)
            stat = await status.read_registration(ch, self.modem)
        except FrameError as exc:
            self.counters["bad_status_lines"] += 1
            self.log.debug("sms_modem_status_unreadable", error=str(exc))
            return
        self._unavailable = "" if stat in info.REGISTERED else f"not registered ({info.CEREG_STAT[stat]})"
        self.state = DriverState.OK if not self._unavailable else DriverState.DEGRADED
        if not self._unavailable:
            self.last_ok = self.clock.now()

    async def _serve(self, ch: AtChannel) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        next_status = loop.time() + self.cfg.status_interval_s
        while True:
            if not ch.is_open:
                raise ModemUnavailable(self._unavailable or "serial port lost")
            try:
                async with asyncio.timeout(1.0):  # not wait_for: it can lose a cancel on 3.11 (gh-86296)
                    rank, _, job = await self._queue.get()
                self._urgent_queued -= rank == URGENT
            except TimeoutError:
                if loop.time() >= next_status:
                    await self._refresh(ch)
                    next_status = loop.time() + self.cfg.status_interval_s
                continue
            if job.done.cancelled():
                continue
            if self._unavailable:
                job.done.set_exception(ModemUnavailable(self._unavailable))
                continue
            if isinstance(job, _CallJob):
                await self._call(ch, job)
                continue
            await self._global_pause()
            try:
                for part in job.parts:
                    lines = await ch.command_with_payload(f"AT+CMGS={part.tpdu_octets}", part.hex.encode("ascii"))
                    self.counters["parts_sent"] += 1
                    self.log.debug("sms_part_accepted", reference=lines[0] if lines else "")
            except (ModemError, DeviceTimeout, ModemUnavailable) as exc:
                self.counters["failed"] += 1
                self.log.warning("sms_send_failed", number=_mask(job.number), error=str(exc))
                if not job.done.done():
                    job.done.set_exception(exc)
                if isinstance(exc, ModemUnavailable):
                    raise
                continue
            self.counters["sent"] += 1
            self.log.info("sms_accepted", number=_mask(job.number), parts=len(job.parts))
            if not job.done.done():
                job.done.set_result(None)

    # ---- rate limits ---------------------------------------------------------------------------

    def _check_rate(self, number: str) -> None:
        now = self.clock.monotonic()
        sent = self._sent_at.setdefault(number, deque())
        while sent and now - sent[0] > 3600:
            sent.popleft()
        if len(sent) >= self.cfg.per_recipient_max_per_hour:
            self.counters["rate_limited"] += 1
            raise CommandRejected("rate_limited", f"{self.cfg.per_recipient_max_per_hour} SMS to {_mask(number)} in the last hour")
        if sent and now - sent[-1] < self.cfg.per_recipient_min_interval_s:
            self.counters["rate_limited"] += 1
            raise CommandRejected("rate_limited", f"last SMS to {_mask(number)} {now - sent[-1]:.0f} s ago")

    def _note_send(self, number: str) -> None:
        self._sent_at[number].append(self.clock.monotonic())

    async def _global_pause(self) -> None:
        """At most global_max_per_minute sends a minute: wait (queue order kept) rather than refuse."""
        while True:
            now = self.clock.monotonic()
            while self._global and now - self._global[0] > 60:
                self._global.popleft()
            if len(self._global) < self.cfg.global_max_per_minute:
                self._global.append(now)
                return
            self.counters["global_waits"] += 1
            await asyncio.sleep(max(0.1, 60 - (now - self._global[0])))

    # ---- events --------------------------------------------------------------------------------

    def _on_urc(self, urc: Urc) -> None:
        if self._session is not None:
            self._session.on_urc(urc)
        if urc.prefix in ("+CEREG", "+CREG"):
            try:
                stat = info.cereg_stat(urc.line.replace(urc.prefix, "+CEREG", 1), urc=True)
            except FrameError:
                self.counters["urc_rejected"] += 1
                return
            self.modem.cereg = stat
            self._unavailable = "" if stat in info.REGISTERED else f"not registered ({info.CEREG_STAT[stat]})"

    def _on_reboot(self, line: str) -> None:
        self.counters["reboots"] += 1
        self._unavailable = f"module rebooted ({line})"
        self.log.warning("sms_modem_rebooted", evidence=line)
        if self._session is not None:
            self._session.abort(self._unavailable)  # a call cannot survive the module's restart
        if self._channel is not None:
            self._channel.close()  # run() reopens and re-initialises from the top

    def _fail_queued(self, exc: Exception) -> None:
        while self._queue is not None and not self._queue.empty():
            rank, _, job = self._queue.get_nowait()
            self._urgent_queued -= rank == URGENT
            if not job.done.done():
                job.done.set_exception(exc)


def _mask(number: str) -> str:
    """Phone numbers are personal data: logs show the last four digits only."""
    return "*" * max(0, len(number) - 4) + number[-4:]
