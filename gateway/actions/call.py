"""Phone-call escalation (issue 22): for rules with "call" in their actions, tiers whose `actions` include
"call" have their contacts called one at a time; the callee hears the alarm twice and acknowledges it with key 1, which acknowledges the alarm as
`call:<contact id>` (recorded, uplinked like any ack). Busy / no answer / declined -> the next contact.

Calling is ActionContext's optional `call` (the daemon routes it to the Caller driver, the Cat-1 module);
the module queues calls with the SMS, so this never waits for it and never places two calls at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from drivers.base import CallOutcome
from gateway.actions.escalation import NoticeKey, SaveNotice
from gateway.actions.schema import Notify
from gateway.actions.sms import RateLimiter, policy_allows, recipients, render
from gateway.actions.tasks import ActionTasks
from gateway.errors import CommandRejected
from gateway.model import Alarm, AlarmState, Device, Severity

Ack = Callable[[str, str], Awaitable[str]]  # (alarm id, by) -> outcome word, e.g. RuleEngine.ack
CALL_PREFIX = "call:"  # notice keys and the acknowledging `by`: "call:<contact id>"


@runtime_checkable
class CallContext(Protocol):
    async def call(self, number: str, text: str, ring_timeout_s: float, key_wait_s: float, preemptible: bool = False) -> CallOutcome:
        """Place one call through the Cat-1 module; raise ModemUnavailable when it cannot now.
        preemptible: a critical alarm's SMS may hang it up (outcome "preempted")."""


def spoken_text(notify: Notify, alarm: Alarm, device: Device | None, identity: Any, minutes_ago: float) -> str:
    """What the callee hears: the message twice, then the prompt (docs/rules.md "Call flow")."""
    message = render(notify.call.message, notify, alarm, device, identity, 0, minutes_ago)
    return message + message + notify.call.prompt


class CallEscalation:
    def __init__(
        self, notify: Notify, contacts: list[Any], devices: dict[str, Device], identity: Any, ctx: Any,
        tasks: ActionTasks, log: Any, save_notice: SaveNotice, ack: Ack, done: set[NoticeKey],
        calls_for: Callable[[str], bool] = lambda rule_id: True,
    ) -> None:
        self.notify, self.contacts, self.devices, self.identity = notify, list(contacts), devices, identity
        self.ctx = ctx
        self.tasks = tasks
        self.log = log.bind(action="call")
        self._save, self._ack = save_notice, ack
        self.limiter = RateLimiter(notify.call.min_interval_s, notify.call.max_per_hour)
        # Shared with the SMS escalation: restored from SQLite at start; call keys carry CALL_PREFIX.
        self.done = done
        self._calls_for = calls_for  # rule id -> the rule has "call" in its actions
        self._busy: set[str] = set()  # alarms with a call in progress: their contacts are called in turn
        self._retry_at: dict[NoticeKey, float] = {}
        self._failing = False
        self._unsupported_logged = False
        self.counters = {"calls_placed": 0, "calls_acknowledged": 0, "calls_unanswered": 0, "calls_failed": 0,
                         "calls_deferred": 0, "calls_rate_limited": 0, "calls_preempted": 0}

    def pump(self, actives: list[Any], now: float) -> None:
        """Start the next call owed for each unacknowledged alarm (never blocks)."""
        tiers = [i for i, t in enumerate(self.notify.tiers) if "call" in t.actions]
        if not tiers:
            return
        if not isinstance(self.ctx, CallContext):
            if not self._unsupported_logged:
                self._unsupported_logged = True
                self.log.warning("call_unsupported", reason="no module that can call")
            return
        down_s = self.ctx.uplink_down_for_s() if hasattr(self.ctx, "uplink_down_for_s") else 0.0
        for act in actives:
            alarm = act.alarm
            if alarm.state != AlarmState.RAISED or alarm.id in self._busy or not self._calls_for(alarm.rule):
                continue
            if not policy_allows(self.notify.call, alarm.severity, down_s):  # type: ignore[arg-type]
                continue
            nxt = self._next(alarm, act.tier, tiers, now)
            if nxt is not None:
                key, contact = nxt
                text = spoken_text(self.notify, alarm, self.devices.get(alarm.device_id), self.identity, (now - act.since_mono) / 60)
                self._busy.add(alarm.id)
                # Only a critical alarm's call (an SOS) holds the module against a critical alarm's SMS.
                preemptible = alarm.severity != Severity.CRITICAL
                self.tasks.spawn("call", alarm.device_id, self._call(key, contact, text, now, preemptible))

    def _next(self, alarm: Alarm, reached: int, tiers: list[int], now: float) -> tuple[NoticeKey, Any] | None:
        """The first contact of a reached calling tier not yet called (rate limits applied here)."""
        device = self.devices.get(alarm.device_id)
        for tier in (t for t in tiers if t < reached):
            for contact in recipients(self.notify.tiers[tier].roles, device, self.contacts):
                key = (alarm.id, tier, CALL_PREFIX + contact.id)
                if key in self.done or now < self._retry_at.get(key, 0.0):
                    continue
                if self.limiter.allow(contact.phone, now):
                    return key, contact
                later = self.limiter.next_allowed(contact.phone, now)
                if later is not None:
                    self._retry_at[key] = later
                    self.counters["calls_deferred"] += 1
                    continue
                self.done.add(key)  # the hourly cap: counted, saved, the next contact is called
                self.counters["calls_rate_limited"] += 1
                self.tasks.spawn("call", alarm.device_id, self._save(key, "call_rate_limited"))
        return None

    async def _call(self, key: NoticeKey, contact: Any, text: str, now: float, preemptible: bool = False) -> None:
        alarm_id = key[0]
        try:
            outcome = await self.ctx.call(contact.phone, text, self.notify.call.ring_timeout_s, self.notify.call.key_wait_s,
                                          preemptible=preemptible)
        except Exception:
            self.counters["calls_failed"] += 1
            self.limiter.release(contact.phone, now)
            self._retry_at[key] = now + self.notify.call.retry_s
            if self._failing:
                self.log.debug("call_failed_again", alarm_id=alarm_id, contact=contact.id)
                return
            self._failing = True
            raise  # ActionTasks turns it into one local fault event per outage
        finally:
            self._busy.discard(alarm_id)
        self._failing = False
        if outcome.result == "preempted":
            # Hung up for a fire or gas alarm's SMS: this contact is still owed the call, at the next pump
            # (after that SMS: the module takes it first). Not a notice, not counted against the limiter.
            self.limiter.release(contact.phone, now)
            self._retry_at.pop(key, None)
            self.counters["calls_preempted"] += 1
            self.log.info("call_preempted", alarm_id=alarm_id, tier=key[1], contact=contact.id)
            return
        self.done.add(key)
        self._retry_at.pop(key, None)
        self.counters["calls_placed"] += 1
        self.log.info("call_done", alarm_id=alarm_id, tier=key[1], contact=contact.id, result=outcome.result)
        await self._save(key, f"call_{outcome.result}")
        if outcome.result == "acknowledged":
            self.counters["calls_acknowledged"] += 1
            try:
                await self._ack(alarm_id, CALL_PREFIX + contact.id)
            except CommandRejected:
                # The alarm ended (cleared) while the phone rang: the key press has nothing left to acknowledge.
                self.log.info("call_ack_after_clear", alarm_id=alarm_id, contact=contact.id)
        else:
            self.counters["calls_unanswered"] += 1

    def forget(self, alarm_id: str) -> None:
        for key in [k for k in self._retry_at if k[0] == alarm_id]:
            del self._retry_at[key]
