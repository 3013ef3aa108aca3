"""Escalation: which tiers of contacts an unacknowledged alarm has reached, and the SMS each one is owed.

Tier i is reached `after_s` after the raise (relative, guard room, grid worker at once; then safety
manager; then the street center). Reaching a tier is an alarm transition (logged, uplinked); its SMS
follow the severity's policy and the per-recipient rate limit, are retried while the modem is away,
and each sent one is persisted so a restart does not send it again. Acknowledging stops all of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from structlog.typing import FilteringBoundLogger

from gateway.actions.context import ActionContext
from gateway.actions.schema import Notify
from gateway.actions.sms import RateLimiter, policy_allows, recipients, render
from gateway.actions.tasks import ActionTasks
from gateway.model import AlarmState, Device, Severity

NoticeKey = tuple[str, int, str]  # (alarm id, tier, contact id)
SaveNotice = Callable[[NoticeKey, str], Awaitable[None]]


class Escalation:
    def __init__(
        self, notify: Notify, contacts: list[Any], devices: dict[str, Device], identity: Any,
        ctx: ActionContext, tasks: ActionTasks, log: FilteringBoundLogger, save_notice: SaveNotice,
    ) -> None:
        self.notify = notify
        self.contacts = list(contacts)
        self.devices = devices
        self.identity = identity
        self.ctx = ctx
        self.tasks = tasks
        self.log = log.bind(action="sms")
        self._save = save_notice
        self.limiter = RateLimiter(notify.sms.min_interval_s, notify.sms.max_per_hour)
        self.done: set[NoticeKey] = set()  # sent or rate-limited: never again (restored from SQLite)
        self._inflight: set[NoticeKey] = set()
        self._retry_at: dict[NoticeKey, float] = {}
        self._modem_failing = False
        self.counters = {"sms_sent": 0, "sms_failed": 0, "sms_deferred": 0, "sms_rate_limited": 0}

    def tiers_due(self, act: Any, now: float) -> list[int]:
        """Tiers newly reached by an unacknowledged alarm (act: gateway.rules.lifecycle.Active)."""
        if act.alarm.state != AlarmState.RAISED:
            return []
        age = now - act.since_mono
        return [i for i in range(act.tier, len(self.notify.tiers)) if self.notify.tiers[i].after_s <= age]

    def pump(self, actives: list[Any], now: float) -> None:
        """Start the SMS owed for reached tiers of unacknowledged alarms (never blocks)."""
        down_s = self.ctx.uplink_down_for_s()
        for act in actives:
            alarm = act.alarm
            if alarm.state != AlarmState.RAISED or act.tier == 0:
                continue
            if not policy_allows(self.notify.sms, alarm.severity, down_s):
                continue  # the platform notifies people while it is reachable; looked at again next tick
            device = self.devices.get(alarm.device_id)
            for tier in range(act.tier):
                if "sms" not in self.notify.tiers[tier].actions:
                    continue  # a calling-only tier (gateway/actions/call.py)
                for contact in recipients(self.notify.tiers[tier].roles, device, self.contacts):
                    key = (alarm.id, tier, contact.id)
                    if key in self.done or key in self._inflight or now < self._retry_at.get(key, 0.0):
                        continue
                    if not self.limiter.allow(contact.phone, now):
                        later = self.limiter.next_allowed(contact.phone, now)
                        if later is not None:
                            # A second alarm within min_interval_s is deferred, never dropped: the guard
                            # must hear about the gas leak even right after the smoke alarm's SMS.
                            self._retry_at[key] = later
                            self.counters["sms_deferred"] += 1
                            continue
                        self.done.add(key)  # the hourly cap: a storm is cut off, counted and saved
                        self.counters["sms_rate_limited"] += 1
                        self.log.info("sms_rate_limited", alarm_id=alarm.id, contact=contact.id, tier=tier)
                        self.tasks.spawn("sms", alarm.device_id, self._save(key, "rate_limited"))
                        continue
                    template = self.notify.templates.raised if tier == 0 else self.notify.templates.escalated
                    text = render(template, self.notify, alarm, device, self.identity, tier, (now - act.since_mono) / 60)
                    if act.detail.get("test"):
                        text = "【测试】" + text  # a simulated fire test (`gateway test fire`), never mistaken
                    self._inflight.add(key)
                    # A critical alarm's (fire, gas) text never waits behind a lower alarm's phone call.
                    urgent = alarm.severity == Severity.CRITICAL
                    self.tasks.spawn("sms", alarm.device_id, self._send(key, contact, text, now, urgent))

    async def _send(self, key: NoticeKey, contact: Any, text: str, now: float, urgent: bool = False) -> None:
        try:
            await self.ctx.send_sms(contact.phone, text, urgent=urgent)
        except Exception:
            self.counters["sms_failed"] += 1
            self.limiter.release(contact.phone, now)
            self._retry_at[key] = now + self.notify.sms.retry_s
            if self._modem_failing:
                self.log.debug("sms_failed_again", alarm_id=key[0], contact=key[2])
                return  # one fault event per outage; repeats are counted
            self._modem_failing = True
            raise
        finally:
            self._inflight.discard(key)
        self.done.add(key)
        self._retry_at.pop(key, None)
        self.counters["sms_sent"] += 1
        if self._modem_failing:
            self._modem_failing = False
            self.log.info("sms_recovered")
        self.log.info("sms_sent", alarm_id=key[0], tier=key[1], contact=key[2])
        await self._save(key, "sent")

    def forget(self, alarm_id: str) -> None:
        """The alarm ended: drop its retry timers (sent marks stay until restart reloads only active ones)."""
        for key in [k for k in self._retry_at if k[0] == alarm_id]:
            del self._retry_at[key]
