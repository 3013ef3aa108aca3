"""The rule engine: Readings/Events in arrival order -> rule evaluators -> alarm lifecycle -> commit + actions.

on_item never waits for storage: a raise starts the sounder write and queues the durable commit side by
side (reliability.md §1.4 P1). Timers (for_s, offline silence, escalation, sounder pattern, flapping
holds) run in `run()` ticks on the injected monotonic clock; `tick()` is one of them (tests).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from gateway.actions.call import CallEscalation
from gateway.actions.escalation import Escalation, NoticeKey
from gateway.actions.schema import Notify
from gateway.actions.sounder import SounderControl
from gateway.actions.tasks import ActionTasks
from gateway.clock import Clock
from gateway.errors import StoreError
from gateway.model import Alarm, AlarmState, Device, Event, EventKind, Item, RecordClass
from gateway.rules import alarm_sql, kinds
from gateway.rules.commit import Committer
from gateway.rules.lifecycle import Active, AlarmBook, Transition
from gateway.rules.match import BadValue, Signal
from gateway.rules.alarm_sql import Pending

TICK_S = 0.25  # sounder pattern resolution and timer granularity; far below any rule duration
HISTORY_MAX = 1000  # cleared alarms kept in memory for `gateway alarms --since`
RESTORE_HISTORY_S = 7 * 86400.0


def rule_kind(rule: Any) -> str:
    """The rule's kind tag ("event", "threshold", ...). msgspec keeps a tag in the class config, not on
    the instance, so getattr(rule, "kind") was always "": GB/T 26875 then mapped every rule alarm to the
    supervisory bit instead of the fire-alarm or fault bit (gateway/uplink/gb26875/mapping.py; issue 16)."""
    config = getattr(type(rule), "__struct_config__", None)
    return str(config.tag) if config is not None and isinstance(config.tag, str) else ""


class RuleEngine:
    def __init__(
        self, rules: tuple[Any, ...], devices: dict[str, Device], outbox: Any, ctx: Any, clock: Clock, log: Any,
        notify: Notify | None = None, contacts: tuple[Any, ...] = (), identity: Any = None,
    ) -> None:
        self.rules = {r.id: r for r in rules}
        self.devices = devices
        self.outbox = outbox
        self.clock = clock
        self.log = log.bind(stage="rules")
        self.notify = notify or Notify()
        self.book = AlarmBook()
        self.tasks = ActionTasks(self.log, self._fault)
        self.committer = Committer(outbox, ctx, clock, self.log)
        self.sounder = SounderControl(self.notify.sounder, ctx, self.tasks, self.log)
        self.escalation = Escalation(self.notify, list(contacts), devices, identity, ctx, self.tasks, self.log, self._save_notice)
        self.calls = CallEscalation(self.notify, list(contacts), devices, identity, ctx, self.tasks, self.log,
                                    self._save_notice, self.ack, self.escalation.done,
                                    lambda rule_id: "call" in getattr(self.rules.get(rule_id), "actions", ()))  # issue 22
        self.evaluators = kinds.build(rules, devices, clock.monotonic(), clock)
        self._by_device = kinds.index(self.evaluators, devices)
        self._recent: deque[Alarm] = deque(maxlen=HISTORY_MAX)
        self._committer_task: asyncio.Task[None] | None = None
        self._bad_value_seen: set[tuple[str, str]] = set()
        self.restore_pending = False  # the store was down at start: stored alarms not yet merged
        self.counters = {"items": 0, "unknown_device": 0, "bad_value": 0, "button_presses": 0}

    def set_contacts(self, contacts: tuple[Any, ...]) -> None:
        """A config_apply of [contacts] (issue 20): the next SMS or call of every tier, including those of
        alarms already escalating, goes to the new numbers; notices already sent stay recorded."""
        self.escalation.contacts = list(contacts)
        self.calls.contacts = list(contacts)

    # ---- lifecycle of the engine ------------------------------------------------------------------
    async def start(self) -> None:
        """Restore active alarms (neither forgotten nor re-notified), start the committer, set the coils.

        The store may be down (read-only card, corrupt file): the engine then starts with what it has
        in memory, acts on new alarms at once, and restores the stored ones when the store comes back
        (`restore_pending`; the daemon retries `restore()`). Nothing here waits for the card to heal."""
        self._ensure_committer()
        try:
            await self.restore()
        except StoreError as exc:
            self.restore_pending = True
            self.log.warning("alarms_restore_deferred", error=str(exc)[:200])
        self._actions(self.clock.monotonic(), reason="restore")

    async def restore(self) -> None:
        """Load the stored active alarms and merge them into the book. An alarm raised again while the
        store was down (same rule and device, new id) supersedes the stored one: the stored one is closed
        first (its clear committed ahead of the new raise, so the one-active-per-(rule, device) index holds)."""
        now = self.clock.monotonic()
        active = await self.outbox.transact(alarm_sql.load_active, durable=False)
        since = self.clock.wall() - RESTORE_HISTORY_S
        recent = await self.outbox.transact(lambda c: alarm_sql.load_recent(c, since, HISTORY_MAX), durable=False)
        notices = await self.outbox.transact(alarm_sql.load_notices, durable=False)
        merged = [*recent, *self._recent]  # stored history first; a full deque drops its oldest
        self._recent.clear()
        self._recent.extend(merged)
        self.escalation.done |= notices
        restored = 0
        for alarm, silenced, tier, detail in active:
            if alarm.id in self.book.by_id:
                continue
            rule = self.rules.get(alarm.rule)
            act = Active(alarm, now - self._age(alarm), "sounder" in getattr(rule, "actions", ()), silenced, tier, detail=detail)
            live = self.book.by_key.get((alarm.rule, alarm.device_id))
            if live is not None:
                t = self.book.supersede(act, self.clock.now(), live.alarm.id)
                self.committer.submit_first(Pending(t, self.record_body(t, act), act.tier, act.silenced, act.detail))
                self._recent.append(t.alarm)
                continue
            if rule is None:
                # Rule removed from the config: keep the alarm until cleared by command, never drop it silently.
                self.log.warning("alarm_rule_gone", alarm_id=alarm.id, rule=alarm.rule, device_id=alarm.device_id)
            self.book.restore(act)
            restored += 1
            for ev in self.evaluators:
                if ev.rule is rule:
                    ev.restore(alarm.device_id, now)
        self.restore_pending = False
        if restored:
            self.log.info("alarms_restored", count=restored)
            self._actions(now, reason="restore")

    def _age(self, alarm: Alarm) -> float:
        """Seconds since the raise: monotonic within this boot, wall if both ends are synced, else 0
        (timers then restart: late rather than wrong)."""
        stamp, now = alarm.raised, self.clock.now()
        if stamp.boot_id == now.boot_id:
            return max(0.0, (now.mono_ns - stamp.mono_ns) / 1e9)
        if stamp.clock_synced and now.clock_synced:
            return max(0.0, now.wall_s - stamp.wall_s)
        return 0.0

    def _ensure_committer(self) -> None:
        if self._committer_task is None or self._committer_task.done():
            self._committer_task = asyncio.get_running_loop().create_task(self.committer.run(), name="rules:committer")

    async def run(self) -> None:
        """Periodic ticks until cancelled (the supervisor's task). Cancellation commits what is queued and
        stops the actions; a crash of a tick leaves the committer running for the restarted run()."""
        self._ensure_committer()
        try:
            while True:
                await self.tick()
                await asyncio.sleep(TICK_S)
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def stop(self, timeout_s: float = 1.0) -> None:
        """Commit what is queued, give actions a moment, then cancel them and the committer."""
        if self._committer_task is not None and not self._committer_task.done():
            try:
                async with asyncio.timeout(timeout_s):  # not wait_for: gh-86296 on 3.11
                    await self.committer.flush()
            except TimeoutError:
                self.log.error("alarm_commit_unfinished", queued=self.committer.depth())
            self._committer_task.cancel()
            await asyncio.gather(self._committer_task, return_exceptions=True)
        await self.tasks.wait(timeout_s)
        await self.tasks.cancel()

    async def flush(self) -> None:
        await self.committer.flush()

    # ---- input --------------------------------------------------------------------------------------
    async def on_item(self, item: Item) -> None:
        """Every Reading/Event, in arrival order. Synchronous work only: no storage wait, no actuation wait."""
        self.counters["items"] += 1
        device = self.devices.get(item.device_id)
        if device is None:
            self.counters["unknown_device"] += 1
            return
        now = self.clock.monotonic()
        changed = False
        if isinstance(item, Event) and item.kind == EventKind.BUTTON:
            changed = self._button(item)
        for ev in self._by_device.get(item.device_id, ()):
            try:
                signals = ev.on_item(item, device, now)
            except BadValue as exc:
                self._bad_value(ev.rule.id, item.device_id, exc)
                continue
            for sig in signals:
                changed |= self._apply(ev.rule, sig, now)
        if changed:
            self._actions(now, reason=item.device_id)

    def _bad_value(self, rule_id: str, device_id: str, exc: BadValue) -> None:
        self.counters["bad_value"] += 1
        key = (rule_id, device_id)
        if key not in self._bad_value_seen:
            self._bad_value_seen.add(key)
            self.log.warning("rule_value_rejected", rule=rule_id, device_id=device_id, field=exc.field, value=repr(exc.value)[:40])

    def _button(self, ev: Event) -> bool:
        """The guard room's button acknowledges every alarm still unacknowledged (sounder off, escalation stops)."""
        self.counters["button_presses"] += 1
        changed = False
        for act in list(self.book.by_key.values()):
            if act.alarm.state == AlarmState.RAISED:
                self._submit(self.book.ack(act.alarm.id, f"button:{ev.device_id}", ev.stamp), act)
                changed = True
        return changed

    def _apply(self, rule: Any, sig: Signal, now: float) -> bool:
        stamp = sig.stamp or self.clock.now()
        if sig.raise_:
            t = self.book.raise_(rule, sig.device_id, stamp, now, sig.detail, sounds="sounder" in rule.actions)
            act = self.book.by_key[(rule.id, sig.device_id)]
            if t.kind == "raised" and self.escalation.tiers_due(act, now)[:1] == [0]:
                act.tier = 1  # tier 0 (after_s = 0) is reached with the raise itself, not a separate step
            self._submit(t, act)
            return t.kind == "raised"
        active = self.book.by_key.get((rule.id, sig.device_id))
        cleared = self.book.auto_clear(rule, sig.device_id, stamp, now, sig.detail)
        if cleared is None or active is None:
            return False
        self._submit(cleared, active)
        return True

    def _submit(self, t: Transition | None, act: Active) -> None:
        if t is None:
            return
        if t.kind == "cleared":
            self._recent.append(t.alarm)
            self.escalation.forget(t.alarm.id)
            self.calls.forget(t.alarm.id)
        self.committer.submit(Pending(t, self.record_body(t, act), act.tier, act.silenced, act.detail))

    def record_body(self, t: Transition, act: Active) -> dict[str, Any]:
        """The ALARM record as the platform receives it."""
        a, device = t.alarm, self.devices.get(t.alarm.device_id)
        rule = self.rules.get(a.rule)
        body: dict[str, Any] = {
            "alarm_id": a.id, "rule": a.rule, "rule_kind": rule_kind(rule), "transition": t.kind,
            "state": str(a.state), "severity": a.severity.name.lower(), "title": a.title, "device_id": a.device_id,
            "by": t.by, "repeats": a.repeats, "tier": act.tier, "raised_wall_s": a.raised.wall_s,
            "raised_synced": a.raised.clock_synced, "detail": dict(t.detail),
        }
        if device is not None:
            loc = device.location
            body.update(type=str(device.type), resident=str(device.resident),
                        location={"building": loc.building, "unit": loc.unit, "room": loc.room})
        return body

    # ---- timers and actions ---------------------------------------------------------------------------
    async def tick(self) -> None:
        now = self.clock.monotonic()
        for ev in self.evaluators:
            for sig in ev.tick(now):
                self._apply(ev.rule, sig, now)
        for t, act in self.book.held_clears_due(self.rules, self.clock.now(), now):
            self._submit(t, act)
        for act in list(self.book.by_key.values()):
            for tier in self.escalation.tiers_due(act, now):
                roles = [str(r) for r in self.notify.tiers[tier].roles]
                self._submit(self.book.escalate(act, tier, self.clock.now(), {"roles": roles}), act)
        self._actions(now, reason="tick")

    def _actions(self, now: float, reason: str) -> None:
        acts = list(self.book.by_key.values())
        ringing = [a for a in acts if a.sounds and a.alarm.state == AlarmState.RAISED]
        self.sounder.sync([a.since_mono for a in ringing if not a.silenced], bool(ringing), now, reason)
        self.escalation.pump(acts, now)
        self.calls.pump(acts, now)

    async def _fault(self, action: str, device_id: str, exc: BaseException) -> None:
        """A failed action becomes a local fault event (uplinked as an EVENT record), reported once per outage."""
        self.log.warning("action_failed", action=action, device_id=device_id, error=str(exc) or type(exc).__name__)
        body = {"kind": str(EventKind.FAULT), "code": f"{action}_failed", "error": str(exc)[:200], "source": "gateway"}
        await self.outbox.put(RecordClass.EVENT, "event.fault", device_id, self.clock.now(), body)

    async def _save_notice(self, key: NoticeKey, outcome: str) -> None:
        wall = self.clock.wall()
        await self.outbox.transact(lambda c: alarm_sql.record_notice(c, *key, outcome, wall), durable=True)

    # ---- commands (platform, CLI, button) and views --------------------------------------------------
    async def ack(self, alarm_id: str, by: str) -> str:
        """Platform command, CLI or button. Sounder and strobe off, escalation stops."""
        return await self._command(alarm_id, by, self.book.ack, "acknowledged", "already_acknowledged")

    async def silence(self, alarm_id: str, by: str) -> str:
        """Sounder off; strobe and escalation go on until someone acknowledges."""
        return await self._command(alarm_id, by, self.book.silence, "silenced", "not_sounding")

    async def _command(self, alarm_id: str, by: str, op: Any, done: str, noop: str) -> str:
        act = self.book.get(alarm_id)
        t = op(alarm_id, by, self.clock.now())
        self._submit(t, act)
        self._actions(self.clock.monotonic(), reason=done)
        return done if t else noop

    async def clear(self, alarm_id: str, by: str) -> str:
        act = self.book.get(alarm_id)
        now = self.clock.monotonic()
        self._submit(self.book.clear(alarm_id, by, self.clock.now()), act)
        reraised = False
        for ev in self._by_device.get(act.alarm.device_id, ()):
            if ev.rule.id == act.alarm.rule:
                ev.reset(act.alarm.device_id, now)  # a condition still present raises again, freshly
                # An input still on (a pump fault whose contact is closed) raises again at once: a manual
                # clear must never hide a persisting condition (issue 15, item 8; docs/rules.md).
                present = getattr(ev, "present", None)
                detail = present(act.alarm.device_id) if callable(present) else None
                if detail is not None:
                    sig = Signal(True, act.alarm.device_id, {**detail, "reasserted_after": "manual_clear"}, self.clock.now())
                    reraised |= self._apply(ev.rule, sig, now)
        self._actions(now, reason="clear")
        return "cleared_raised_again" if reraised else "cleared"

    def active(self) -> list[Alarm]:
        return self.book.active()

    def history(self, since_s: float) -> list[Alarm]:
        cutoff = self.clock.wall() - since_s
        alarms = [a for a in self._recent if a.updated.wall_s >= cutoff] + self.book.active()
        return sorted(alarms, key=lambda a: a.raised.wall_s)

    def health(self) -> dict[str, Any]:
        return {
            "active": len(self.book.by_key),
            "commit_queue": self.committer.depth(),
            "counters": {**self.counters, **self.book.counters, **self.committer.counters, **self.tasks.counters,
                         **self.sounder.counters, **self.escalation.counters, **self.calls.counters},
            "sounder": self.sounder.state(),
        }
