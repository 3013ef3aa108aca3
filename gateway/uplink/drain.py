"""The publishing loop of one connected session: outbox rows -> PUBLISH -> PUBACK -> outbox.ack.

Rules (reliability §2, CLARIFICATIONS "paho rules"): publish only while connected; at most
max_inflight un-PUBACKed messages; a row leaves the outbox only on a PUBACK with reason code < 0x80;
strict priority (no telemetry PUBLISH starts while an alarm, event or status record is waiting);
FIFO within a class; telemetry batched and rate limited by a token bucket. A telemetry batch leaves
when full or `batch_linger_ms` after its first reading (issue 17: readings are published from the
outbox's memory as they arrive, so without the linger each would go alone).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.errors import StoreError, UplinkError
from gateway.model import RecordClass
from gateway.uplink.reconnect import Backoff
from gateway.uplink.compact import CompactBatcher
from gateway.uplink.wire import Batcher, Envelope, Message, TelemetryBatcher

CONSUMER = "mqtt"
IDLE_WAIT_S = 1.0  # re-check the outbox at least this often even without a commit notification
NOT_AUTHORIZED_RC = 0x87  # MQTT v5 §2.4 reason code 135
# A PUBLISH without PUBACK for this long means a half-open link: drop the session now rather than
# wait for keepalive (1.5 x 30 s) while an alarm sits in flight. Generous for 20 x 16 KiB on a slow link.
PUBACK_TIMEOUT_S = 15.0


class TokenBucket:
    """drain_readings_per_s with a burst of at most one batch, and never overdrawn (issue 21).

    The old bucket started full at max(batch, rate) and let a batch overdraw it: 7,184-7,557 readings in
    the first 0.5 s after a broker return against 5,000/s. Now it starts empty at each session and a batch
    is sized to the tokens there are, so over any T s from the session start at most rate x T readings go
    out (and at most rate x T + capacity over any later window).
    """

    def __init__(self, rate_per_s: float, capacity: float, clock: Any) -> None:
        self.rate = rate_per_s
        self.capacity = max(1.0, capacity)
        self.clock = clock
        self.tokens = 0.0
        self._last = clock.monotonic()

    def reset(self) -> None:
        """Empty: a new session earns its first batch at the configured rate (no burst on return)."""
        self.tokens = 0.0
        self._last = self.clock.monotonic()

    def wait_s(self, want: float = 1.0) -> float:
        """Seconds until `want` tokens (clamped to capacity) are there; 0 if they are now."""
        now = self.clock.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now
        want = min(want, self.capacity)
        return 0.0 if self.tokens >= want else (want - self.tokens) / self.rate + 1e-3

    def spend(self, n: int) -> None:
        self.tokens -= n


class Counters(msgspec.Struct):
    messages_published: int = 0
    records_published: int = 0
    records_acked: int = 0
    bytes_published: int = 0
    puback_failures: int = 0
    ack_store_errors: int = 0
    puback_timeouts: int = 0
    tables_published: int = 0
    tables_refused: int = 0  # PUBACK >= 0x80 on cg/v1/<gw>/table: the broker ACL predates telemetry v2


def passed(records: list[Any], sent: Sequence[int]) -> int:
    """The highest telemetry seq the cursor may move to after `sent` went out of the fetched `records`:
    every fetched reading at or below it was sent. Fetches come in seq order and a batch takes a prefix,
    so that is max(sent); were a reading left out below it, the cursor stops just under that reading."""
    top = max(sent, default=0)
    taken = set(sent)
    missed = [r.seq for r in records if r.cls == RecordClass.TELEMETRY and r.seq < top and r.seq not in taken]
    return min(missed) - 1 if missed else top


class Drainer:
    """Owns in-flight tracking (mid -> seqs) for the current session; survives across sessions."""

    def __init__(self, cfg: Any, outbox: Any, envelope: Envelope, clock: Any, log: Any) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.clock = clock
        self.log = log
        version = getattr(cfg, "telemetry_version", 2)
        self.batcher: Batcher = (CompactBatcher if version == 2 else TelemetryBatcher)(envelope, cfg.batch_max_readings, cfg.batch_max_bytes)
        self.env = envelope
        # Capacity: one batch, but no more than 0.1 s of the rate (a slow link gets small batches, not bursts).
        self.bucket = TokenBucket(cfg.drain_readings_per_s, min(cfg.batch_max_readings, max(1.0, cfg.drain_readings_per_s / 10)), clock)
        self.counters = Counters()
        self.inflight: dict[int, Message] = {}  # mid -> message (its seqs)
        self.sent_mono: dict[int, float] = {}  # mid -> when it was handed to paho
        self.acking: set[int] = set()  # seqs PUBACKed, outbox.ack not yet committed: never re-fetch them
        # Telemetry cursor (docs/uplink.md "Drain cursor"): every reading at or below it that the outbox still
        # owes us is in flight or being acked. 0 = fetch from the outbox's floor. Back to 0 whenever that may
        # no longer hold: a new session, a refused PUBACK, an ack that did not complete (whatever stopped
        # it), another store (its seqs start anew), and whenever the drain is idle, so even a rewind this
        # code missed could only delay a reading until the drain next caught up, never lose it.
        self.cursor = 0
        self.cursor_store = ""
        self.table_mids: set[int] = set()  # v2 stream table PUBLISHes awaiting their PUBACK
        self.wake = asyncio.Event()  # new records committed, window opened, or pause over
        self.urgent = False  # an alarm/event/status record committed since the last fetch
        self.fault = ""  # "" or e.g. "puback_135"
        self.refused = Backoff(cfg.reconnect_base_s, cfg.reconnect_cap_s)
        self.paused_until = 0.0
        self.last_puback_wall: float | None = None
        self.last_puback_mono: float | None = None
        self.on_refused: Any = None  # callback(rc) for the owner's state machine
        self.on_recovered: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._was_synced = clock.synced()

    # ---- notifications -------------------------------------------------------------------------
    def on_commit(self, cls_min: RecordClass) -> None:
        if cls_min < RecordClass.TELEMETRY:
            self.urgent = True
        self.wake.set()

    def on_publish(self, mid: int, rc: int) -> None:
        """PUBACK for `mid` (loop thread). Takes no lock that publish() holds (paho #354)."""
        msg = self.inflight.pop(mid, None)
        self.sent_mono.pop(mid, None)
        self.wake.set()
        if mid in self.table_mids:
            self._table_acked(mid, rc)
            return
        if msg is None:
            return  # a status or reply message: nothing to ack in the outbox
        if rc >= 0x80:
            self.cursor = 0  # its rows stay owed
            self._refused(msg, rc)
            return
        self.acking.update(msg.seqs)
        self.last_puback_wall = self.clock.wall()
        self.last_puback_mono = self.clock.monotonic()
        task = asyncio.get_running_loop().create_task(self._ack(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.fault:
            self.log.info("uplink_publish_recovered", fault=self.fault)
            self.fault = ""
            self.refused.reset()
            if self.on_recovered:
                self.on_recovered()

    def _table_acked(self, mid: int, rc: int) -> None:
        self.table_mids.discard(mid)
        if rc >= 0x80:
            # Not a delivery failure of records (each session's first batch carries its table inline), but a
            # consumer that joins late now needs the `table` command: say so once (docs/uplink.md, ACL).
            level = self.log.warning if not self.counters.tables_refused else self.log.debug
            self.counters.tables_refused += 1
            level("uplink_table_refused", rc=rc, hint="the broker ACL must let the gateway write cg/v1/<id>/table")

    def _refused(self, msg: Message, rc: int) -> None:
        # MQTT v5 PUBACK >= 0x80 (e.g. 135 Not authorized by a broker ACL): not delivered. The rows stay;
        # publishing pauses with backoff (reliability §0.4: on 3.1.1 this would have been a silent RC 0).
        self.counters.puback_failures += 1
        first = not self.fault
        self.fault = f"puback_{rc}"
        if rc == NOT_AUTHORIZED_RC:
            self.refused.to_cap()  # an ACL does not fix itself in a second
        delay = self.refused.next_delay()
        self.paused_until = self.clock.monotonic() + delay
        level = self.log.warning if first else self.log.debug
        level("uplink_publish_refused", rc=rc, topic=msg.topic, seqs=len(msg.seqs), retry_in_s=round(delay, 1))
        if self.on_refused:
            self.on_refused(rc)

    async def _ack(self, msg: Message) -> None:
        acked = False
        try:
            await self.outbox.ack(CONSUMER, msg.seqs)
            acked = True
            self.counters.records_acked += len(msg.seqs)
        except StoreError as exc:
            # Not deleted: the rows will be sent again (a keyed duplicate), never lost.
            self.counters.ack_store_errors += 1
            self.log.warning("uplink_ack_failed", error=str(exc), seqs=len(msg.seqs))
        finally:
            if not acked:  # failed, cancelled or our own bug: the rows are owed and no longer held
                self.cursor = 0
            self.acking.difference_update(msg.seqs)

    def session_lost(self) -> None:
        """Forget in-flight mids (a new session re-fetches those rows from the outbox)."""
        self.inflight.clear()
        self.sent_mono.clear()
        self.table_mids.clear()
        self.cursor = 0

    def stalled(self) -> bool:
        """True when the oldest un-PUBACKed message is older than PUBACK_TIMEOUT_S."""
        return bool(self.sent_mono) and self.clock.monotonic() - min(self.sent_mono.values()) > PUBACK_TIMEOUT_S

    def held(self) -> set[int]:
        held = set(self.acking)
        for msg in self.inflight.values():
            held.update(msg.seqs)
        return held

    # ---- the loop ------------------------------------------------------------------------------
    async def run(self, session: Any) -> None:
        """Publish until the session closes or stalls (returns), or the task is cancelled."""
        self.bucket.reset()
        self.batcher.session_start()
        self.cursor = 0  # session_lost did it too; a new session never trusts the last one's window
        while session.connected:
            if self.stalled():
                self.counters.puback_timeouts += 1
                self.log.warning("uplink_puback_timeout", inflight=len(self.inflight), timeout_s=PUBACK_TIMEOUT_S)
                return  # the owner drops this session and reconnects; the rows are still in the outbox
            wait = self._blocked_s()
            if wait > 0:
                await self._sleep(wait)
                continue
            await self._maybe_rebase()
            self.urgent = False
            if self.outbox.store_id != self.cursor_store:
                self.cursor, self.cursor_store = 0, self.outbox.store_id
            records = self.outbox.fetch(CONSUMER, self.cfg.batch_max_readings, exclude=self.held(), after=self.cursor)
            if not records and not self.inflight and not self.acking:
                self.cursor = 0  # idle: the next fetch looks from the floor again (cheap now: nothing to step over)
            if not records:
                await self._sleep(IDLE_WAIT_S)
                continue
            if records[0].cls != RecordClass.TELEMETRY:
                self._publish_records(session, [r for r in records if r.cls != RecordClass.TELEMETRY])
                continue
            want = min(len(records), int(self.bucket.capacity))
            wait = self.bucket.wait_s(want)
            if wait > 0:
                await self._sleep(wait)
                continue  # re-fetch: an alarm may have arrived while we waited
            if self.urgent:
                continue
            if await self._linger(records):
                continue  # re-fetch: the batch filled up, or an alarm arrived meanwhile
            msg = self.batcher.take([self._rebased(r) for r in records[:want]])  # never more than the bucket allows
            self.bucket.spend(len(msg.seqs))
            table = self.batcher.pop_table()
            if table is not None:  # v2: retained before the first batch of this session that uses it
                self._send_table(session, table)
            if self._send(session, msg):
                self.cursor = max(self.cursor, passed(records, msg.seqs))

    async def _linger(self, records: list[Any]) -> bool:
        """Wait until the batch is full or batch_linger_ms after its first reading; True if it waited."""
        linger_s = getattr(self.cfg, "batch_linger_ms", 0.0) / 1000
        if linger_s <= 0 or len(records) >= self.cfg.batch_max_readings:
            return False
        first = records[0].stamp
        if first.boot_id != self.clock.boot_id:
            return False  # a backlog from an earlier boot: no reason to wait
        left = linger_s - (self.clock.monotonic_ns() - first.mono_ns) / 1e9
        if left <= 0:
            return False
        loop = asyncio.get_running_loop()  # real time even under an injected clock
        deadline = loop.time() + min(left, linger_s)
        self.urgent = False
        while not self.urgent and loop.time() < deadline:
            await self._sleep(deadline - loop.time())  # each new reading wakes it; only alarms cut it short
        return True

    def _blocked_s(self) -> float:
        if len(self.inflight) >= self.cfg.max_inflight:
            return IDLE_WAIT_S  # woken by on_publish
        return max(0.0, self.paused_until - self.clock.monotonic())

    async def _sleep(self, timeout_s: float) -> None:
        self.wake.clear()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that lands as the
        # event is set (gh-86296), and the drain then outlives its session's stop (seen in the drain-rate test).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.wake.wait()

    def _publish_records(self, session: Any, records: list[Any]) -> None:
        for rec in records:
            if len(self.inflight) >= self.cfg.max_inflight:
                return
            r = self._rebased(rec)
            self._send(session, self.env.record(r.seq, r.cls, r.kind, r.device, r.stamp, r.body))

    def _send(self, session: Any, msg: Message) -> bool:
        try:
            mid = session.publish(msg.topic, msg.payload)
        except UplinkError as exc:
            self.log.debug("uplink_publish_skipped", reason=str(exc))
            return False
        self.inflight[mid] = msg
        self.sent_mono[mid] = self.clock.monotonic()
        self.counters.messages_published += 1
        self.counters.records_published += len(msg.seqs)
        self.counters.bytes_published += len(msg.payload)
        return True

    def _send_table(self, session: Any, msg: Message) -> None:
        # Not an outbox record: its PUBACK finds no inflight entry and is ignored. If it is lost, the batch
        # still carries the table inline (docs/uplink.md "Telemetry batch v2").
        try:
            self.table_mids.add(session.publish(msg.topic, msg.payload, retain=True))
        except UplinkError as exc:
            self.log.debug("uplink_publish_skipped", reason=str(exc))
            return
        self.counters.tables_published += 1
        self.counters.bytes_published += len(msg.payload)

    def _rebased(self, rec: Any) -> Any:
        if rec.stamp.clock_synced:
            return rec
        stamp = self.clock.rebase(rec.stamp)
        return rec if stamp is rec.stamp else msgspec.structs.replace(rec, stamp=stamp)

    async def _maybe_rebase(self) -> None:
        # Persist the re-based stamps once when the clock syncs, so resends stay byte-identical
        # (the store also does it by itself within ~1 s; this makes it happen before the next send).
        synced = self.clock.synced()
        if synced and not self._was_synced:
            rows = await self.outbox.rebase_unsynced()
            self.log.info("uplink_clock_synced_rebased", rows=rows)
        self._was_synced = synced
