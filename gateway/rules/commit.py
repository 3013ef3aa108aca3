"""The alarm committer: transitions queued in order, group-committed through Outbox.transact (durable),
each with its ALARM outbox record in the same transaction. Only after the commit is a transition logged
as a fact and the uplink woken (reliability.md §1.4 P1: the uplink never reports what is not committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from structlog.typing import FilteringBoundLogger

from gateway.clock import Clock
from gateway.errors import FailureLog, StoreError
from gateway.rules import alarm_sql
from gateway.rules.alarm_sql import Pending

RETRY_S = 1.0  # the store could not commit (I/O error, full beyond the ballast): try again this often
# While the store is down this queue is the alarms' journal. Transitions other than repeats are bounded by
# rules x devices and by flapping suppression; repeats beyond this depth are coalesced (docs/store.md).
REPEATS_COALESCE_AT = 1000


class Committer:
    def __init__(self, outbox: Any, ctx: Any, clock: Clock, log: FilteringBoundLogger) -> None:
        self.outbox = outbox
        self.ctx = ctx
        self.clock = clock
        self.log = log
        self._queue: list[Pending] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._failures = FailureLog(log)  # first commit failure WARNING, repeats DEBUG, recovery INFO
        # Called with (pending, seq, committed monotonic ns) after each commit: latency bench, tests.
        self.listeners: list[Callable[[Pending, int, int], None]] = []
        self.counters = {"commits": 0, "transitions": 0, "commit_failures": 0}

    def submit(self, p: Pending) -> None:
        if p.transition.kind == "repeated" and len(self._queue) >= REPEATS_COALESCE_AT:
            # The store is down and a detector keeps repeating: a repeat only updates the count, which the
            # next transition of the alarm carries anyway. Raises, acks and clears are always kept.
            self.counters["repeats_coalesced"] = self.counters.get("repeats_coalesced", 0) + 1
            return
        self._queue.append(p)
        self._idle.clear()
        self._wakeup.set()

    def submit_first(self, p: Pending) -> None:
        """Commit `p` ahead of everything queued (a stored alarm superseded while the store was down)."""
        self._queue.insert(0, p)
        self._idle.clear()
        self._wakeup.set()

    def depth(self) -> int:
        return len(self._queue)

    async def flush(self) -> None:
        """Return once everything submitted so far is committed."""
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._commit(batch)
                except StoreError as exc:
                    self._queue = batch + self._queue  # never drop a transition: keep order, retry
                    self.counters["commit_failures"] += 1
                    self._failures.failed("alarm_commit_failed", error=str(exc), queued=len(self._queue))
                    await asyncio.sleep(RETRY_S)
                    continue
                self._failures.recovered("alarm_commit_recovered")
            self._idle.set()

    async def _commit(self, batch: list[Pending]) -> None:
        try:
            seqs = await self.outbox.transact(lambda conn: alarm_sql.write(conn, self.outbox, batch), durable=True)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in one transition must not stall every later alarm
            if len(batch) > 1:
                for p in batch:  # find the bad one; the others commit
                    await self._commit([p])
                return
            self.counters["rejected"] = self.counters.get("rejected", 0) + 1
            self.log.error("alarm_commit_rejected", alarm_id=batch[0].transition.alarm.id, kind=batch[0].transition.kind, error=repr(exc))
            return
        self._after_commit(batch, seqs)

    def _after_commit(self, batch: list[Pending], seqs: list[int]) -> None:
        done_ns = self.clock.monotonic_ns()
        self.counters["commits"] += 1
        self.counters["transitions"] += len(batch)
        if any(seqs):
            self.ctx.notify_uplink()
        for p, seq in zip(batch, seqs):
            t = p.transition
            if seq:
                log = self.log.warning if t.kind == "raised" else self.log.info
                log(f"alarm_{t.kind}", alarm_id=t.alarm.id, rule=t.alarm.rule, device_id=t.alarm.device_id,
                    severity=t.alarm.severity.name.lower(), by=t.by, seq=seq, **{k: v for k, v in t.detail.items() if k in ("tier", "value", "code")})
            for listener in self.listeners:
                listener(p, seq, done_ns)
