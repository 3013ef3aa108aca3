"""The GB/T 26875.3 uplink: connect to the centre, send outbox records as part frames, answer its requests.

    disconnected --TCP connect--> connected (heartbeat confirmed) --no confirm after retries / EOF--> backoff
Its own cursor over the shared outbox (consumer "gb26875"): a record is acked once the centre confirmed
every frame made from it, or at once when it has no GB 26875 meaning. ALARM records go first (fetch
orders by class, seq) and a new alarm cuts every wait short.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
from collections import Counter
from typing import Any

from gateway.errors import FailureLog, FrameError, UplinkError
from gateway.model import EventKind, RecordClass
from gateway.uplink.gb26875.frame import Command, Frame, SerialCounter, local_time, utc_seconds
from gateway.uplink.gb26875.link import Denied, Link
from gateway.uplink.gb26875.mapping import Mapper, NotApplicable
from gateway.uplink.gb26875.objects import (DeviceOperation, DeviceState, OperationBit, OperatorCheck,
                                            TimeSync, TypeFlag, decode_adu, encode_adu)
from gateway.uplink.gb26875.operator import OperatorChecks
from gateway.uplink.reconnect import Backoff

CONSUMER = "gb26875"
CLASSES = frozenset({RecordClass.ALARM, RecordClass.EVENT, RecordClass.TELEMETRY})
FETCH_LIMIT = 8  # small: a new alarm overtakes queued telemetry after at most this many records
POLL_S = 0.5  # fallback when no commit callback fires (and the cadence of operator-check expiry)
# While an alarm waits for the centre, reconnect at least this often (issue 23: the 10 s deadline; measured,
# an 8 s centre outage otherwise costs up to 21 s of backoff after the centre is back, docs/BENCHMARKS.md).
ALARM_RETRY_S = 1.0
# Every counter health() reports, present from the start (zeros are information at 3 a.m.).
COUNTERS = ("frames_sent", "frames_received", "frames_rejected", "confirms", "denies", "retransmits",
            "answers_unmatched", "heartbeats", "records_delivered", "records_denied", "records_no_part_mapping",
            "records_no_gb_meaning", "records_unchanged", "records_unencodable", "requests_rejected",
            "requests_unsupported", "time_syncs", "operator_checks", "operator_checks_answered",
            "operator_checks_missed", "connect_failed", "connection_lost", "reconnects")


class ConnState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"


class GB26875Client:
    def __init__(self, cfg: Any, outbox: Any, devices: dict[str, Any], clock: Any, log: Any, rng: Any = None) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.clock = clock
        self.log = log.bind(component="gb26875", centre=f"{cfg.host}:{cfg.port}") if hasattr(log, "bind") else log
        self.tz = cfg.tz()
        self.mapper = Mapper(devices, cfg)
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self.checks = OperatorChecks(clock, self.log, self.counters)
        self.backoff = Backoff(cfg.reconnect_base_s, cfg.reconnect_cap_s, rng)
        self.serials = SerialCounter()
        self.state = ConnState.DISCONNECTED
        self.last_confirm_wall: float | None = None
        self.last_error = ""
        self._wake = asyncio.Event()
        self._alarm_kick = asyncio.Event()
        self._link: Link | None = None
        self._failures = FailureLog(self.log)  # first failure WARNING, repeats DEBUG, recovery INFO
        if hasattr(outbox, "on_commit"):
            outbox.on_commit(self._on_commit)

    # ---- public ---------------------------------------------------------------------------------
    def confirm_operator_check(self, by: str) -> None:
        """The CLI (or the guard room) answers the centre's 查岗; raises CommandRejected if none is open."""
        self.checks.confirm(by)
        self._wake.set()

    def notify(self, cls_min: int = RecordClass.ALARM) -> None:
        """New records committed (the outbox's on_commit callback): look now; an alarm also ends a backoff."""
        self._wake.set()
        if cls_min <= RecordClass.EVENT:  # a detector's alarm is an EVENT record before the rule's ALARM one
            self._alarm_kick.set()

    _on_commit = notify

    def health(self) -> dict[str, Any]:
        return {"state": str(self.state), "centre": f"{self.cfg.host}:{self.cfg.port}",
                "last_confirm_wall": self.last_confirm_wall, "last_error": self.last_error,
                "operator_check": self.checks.snapshot(), **dict(self.counters)}

    async def run(self) -> None:
        """Connect, deliver and answer until cancelled."""
        while True:
            self.state = ConnState.CONNECTING
            try:  # asyncio.timeout, not wait_for: wait_for can swallow a cancellation on 3.11 (gh-86296)
                async with asyncio.timeout(self.cfg.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(self.cfg.host, self.cfg.port)
            except (OSError, TimeoutError) as exc:
                self._failed("connect_failed", exc)
            else:
                await self._session(reader, writer)
            self.state = ConnState.BACKOFF
            self.counters["reconnects"] += 1
            self._alarm_kick.clear()
            delay = self.backoff.next_delay()
            if self.outbox.fetch(CONSUMER, 1, classes=(RecordClass.ALARM,)):
                delay = min(delay, ALARM_RETRY_S)
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancellation on 3.11 (gh-86296)
                async with asyncio.timeout(delay):
                    await self._alarm_kick.wait()

    # ---- connection -----------------------------------------------------------------------------
    def _failed(self, event: str, exc: BaseException) -> None:
        self.last_error = f"{event}: {exc}"
        self.counters[event] += 1
        self._failures.failed(event, error=str(exc) or type(exc).__name__)

    def _now_local(self) -> dt.datetime:
        return local_time(self.clock.wall(), self.tz)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = Link(reader, writer, self.cfg, self.serials, self._now_local, self._on_request, self.counters, self.log)
        self._link = link
        self.mapper.reset_session()
        read_task = asyncio.create_task(link.read_loop(), name="gb26875-read")
        work_task = asyncio.create_task(self._serve(link), name="gb26875-serve")
        try:
            done, _ = await asyncio.wait({read_task, work_task}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, (OSError, UplinkError, asyncio.TimeoutError)):
                    raise exc  # a bug, not the network: let the supervisor see it and restart us
                self._failed("connection_lost", exc or ConnectionResetError("centre closed the connection"))
        finally:
            for task in (read_task, work_task):
                task.cancel()
            await asyncio.gather(read_task, work_task, return_exceptions=True)
            self._link = None
            await link.close()
            self.state = ConnState.DISCONNECTED

    async def _serve(self, link: Link) -> None:
        """Heartbeat first (proves the centre answers), then records, operator answers and heartbeats."""
        await self._heartbeat(link)
        self.state = ConnState.CONNECTED
        self.backoff.reset()
        self._failures.recovered("centre_connected")
        next_heartbeat = self.clock.monotonic() + self.cfg.heartbeat_period_s
        while True:
            self.checks.expire()
            while self.checks.answers:
                reply = DeviceOperation(OperationBit.INSPECTION_REPLY, self.cfg.operator_number, self._now_local())
                try:
                    await self._send(link, [reply], "operator_answer")
                except Denied as exc:
                    self.log.error("operator_answer_denied", by=self.checks.answers[0], error=str(exc))
                self.checks.answers.pop(0)
            self._wake.clear()
            sent = await self._deliver_some(link)
            if self.clock.monotonic() >= next_heartbeat:
                await self._heartbeat(link)
                next_heartbeat = self.clock.monotonic() + self.cfg.heartbeat_period_s
            if not sent:
                timeout = min(POLL_S, max(0.0, next_heartbeat - self.clock.monotonic()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()

    async def _heartbeat(self, link: Link) -> None:
        # The heartbeat carries the device's whole state byte (mains / backup faults stay visible, issue 23).
        await self._send(link, [DeviceState(self.mapper.device_state(), self._now_local())], "heartbeat")
        self.counters["heartbeats"] += 1

    async def _send(self, link: Link, objects: list[Any], what: str) -> None:
        await link.exchange(encode_adu(objects), what)
        self.last_confirm_wall = self.clock.wall()

    # ---- records --------------------------------------------------------------------------------
    async def _deliver_some(self, link: Link) -> int:
        """One fetch: deliver or skip each record, ack in order. Returns how many records were handled."""
        records = self.outbox.fetch(CONSUMER, FETCH_LIMIT, classes=CLASSES)
        for rec in records:
            await self._deliver(link, rec)
            if self._alarm_kick.is_set() and rec.cls != RecordClass.ALARM:
                self._alarm_kick.clear()
                break  # a new alarm was committed: refetch so it goes before the rest of this batch
        return len(records)

    async def _deliver(self, link: Link, rec: Any) -> None:
        if rec.cls == RecordClass.EVENT and rec.body.get("kind") == EventKind.BUTTON:
            if self.checks.button_pressed(rec.device, rec.stamp):
                self._wake.set()
        try:
            frames = self.mapper.frames_for(rec, self.clock.monotonic())
        except NotApplicable as na:
            self.counters[f"records_{na.reason}"] += 1
            await self.outbox.ack(CONSUMER, [rec.seq])
            return
        except FrameError as exc:  # a value that cannot be encoded (bad time tag from a wild clock...)
            self.counters["records_unencodable"] += 1
            self.log.warning("record_unencodable", seq=rec.seq, reason=exc.reason)
            await self.outbox.ack(CONSUMER, [rec.seq])
            return
        try:
            for objects in frames:
                await self._send(link, objects, f"seq {rec.seq}")
        except Denied as exc:
            # The centre refused this record on every try: holding it would block every later alarm.
            self.counters["records_denied"] += 1
            self.log.error("record_denied", seq=rec.seq, kind=rec.kind, device_id=rec.device, error=str(exc))
            self.mapper.reset_session()
        else:
            self.counters["records_delivered"] += 1
            if rec.cls == RecordClass.ALARM:
                self.log.info("alarm_delivered", seq=rec.seq, device_id=rec.device)
        await self.outbox.ack(CONSUMER, [rec.seq])

    # ---- the centre's requests ------------------------------------------------------------------
    def _on_request(self, frame: Frame) -> None:
        link = self._link
        if link is None:
            return
        if frame.command not in (Command.CONTROL, Command.SEND_DATA):
            self.counters["requests_unsupported"] += 1
            link.answer(frame, Command.DENY)  # queries (4) of configuration and records are not offered
            return
        try:
            flag, objects = decode_adu(frame.data)
        except FrameError as exc:
            self.counters["requests_rejected"] += 1
            self.log.warning("request_rejected", serial=frame.serial, reason=exc.reason)
            link.answer(frame, Command.DENY)
            return
        if flag == TypeFlag.TIME_SYNC:
            assert isinstance(objects[0], TimeSync)
            self.clock.offer_time("gb26875", utc_seconds(objects[0].time, self.tz))
            self.counters["time_syncs"] += 1
            link.answer(frame, Command.CONFIRM)
        elif flag == TypeFlag.OPERATOR_CHECK:
            assert isinstance(objects[0], OperatorCheck)
            window_min = objects[0].window_min
            link.answer(frame, Command.CONFIRM)  # receipt; the person's answer follows as type 24
            self.checks.requested(window_min * 60.0 if window_min else self.cfg.operator_check_window_s)
        else:
            self.counters["requests_unsupported"] += 1
            link.answer(frame, Command.DENY)
