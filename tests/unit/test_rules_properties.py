"""Hypothesis state machine over the engine with a real SQLite file: whatever the order of events,
commands, timer ticks and restarts, no alarm is cleared before it was raised, one alarm is active per
(rule, device), and a restart resumes exactly the state that was committed."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.model import AlarmState, EventKind
from tests.unit.test_rules_engine import GAS, SMOKE, Rig

SMOKES = ["smoke-401", "smoke-502"]
ORDER = {"raised": 0, "acknowledged": 1, "silenced": 1, "escalated": 1, "cleared": 2}


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="rules-prop-"))
        self.rig = Rig(self.dir, rule_dicts=(SMOKE, {**GAS, "for_s": 10}))
        self.run(self.rig.engine.start())
        self.run(self.rig.settle())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.rig.engine.stop())
        self.rig.outbox.close()
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _item(self, item) -> None:
        self.run(self.rig.engine.on_item(item))
        self.run(self.rig.settle())

    @rule(device=st.sampled_from(SMOKES))
    def smoke(self, device):
        self._item(self.rig.feed.event(device, EventKind.ALARM, "smoke"))

    @rule(device=st.sampled_from(SMOKES))
    def smoke_cleared(self, device):
        self._item(self.rig.feed.event(device, EventKind.ALARM_CLEARED))

    @rule(lel=st.sampled_from([0.0, 19.9, 20.0, 24.9, 25.0, 60.0]))
    def gas(self, lel):
        self._item(self.rig.feed.reading("gas-401", lel_pct=lel))

    @rule()
    def button(self):
        self._item(self.rig.feed.event("guard-relay", EventKind.BUTTON, "ack"))

    @precondition(lambda self: self.rig.engine.active())
    @rule(pick=st.integers(0, 10), op=st.sampled_from(["ack", "silence", "clear"]))
    def command(self, pick, op):
        alarms = self.rig.engine.active()
        alarm = alarms[pick % len(alarms)]
        self.run(getattr(self.rig.engine, op)(alarm.id, "cli:prop"))
        self.run(self.rig.settle())

    @rule(seconds=st.sampled_from([0.5, 5.0, 11.0, 301.0]))
    def time_passes(self, seconds):
        self.run(self.rig.tick(seconds))

    @rule()
    def restart(self):
        before = sorted((a.id, a.state, a.repeats) for a in self.rig.engine.active())
        sms_before = len(self.rig.ctx.sms)
        # SMS deferred by the per-recipient interval are owed, not sent: they may go out after the restart.
        owed = len(self.rig.engine.escalation._retry_at)
        self.run(self.rig.restart())
        self.run(self.rig.settle())
        after = sorted((a.id, a.state, a.repeats) for a in self.rig.engine.active())
        assert after == before
        assert sms_before <= len(self.rig.ctx.sms) <= sms_before + owed  # nothing already sent is sent again

    @invariant()
    def one_active_per_rule_and_device(self):
        keys = [(a.rule, a.device_id) for a in self.rig.engine.active()]
        assert len(keys) == len(set(keys))
        rows = self.rig.outbox.conn.execute(
            "SELECT rule, device_id, COUNT(*) FROM alarm WHERE state != 'cleared' GROUP BY rule, device_id HAVING COUNT(*) > 1"
        ).fetchall()
        assert rows == []

    @invariant()
    def records_follow_the_lifecycle(self):
        seen: dict[str, list[str]] = defaultdict(list)
        for _, kind, _, body in self.rig.outbox.records("alarm."):
            seen[body["alarm_id"]].append(kind.removeprefix("alarm."))
        for alarm_id, kinds in seen.items():
            assert kinds[0] == "raised", (alarm_id, kinds)
            assert kinds.count("raised") == 1 and kinds.count("cleared") <= 1
            assert [ORDER[k] for k in kinds] == sorted(ORDER[k] for k in kinds), (alarm_id, kinds)

    @invariant()
    def memory_matches_the_database(self):
        rows = self.rig.outbox.conn.execute("SELECT id, state FROM alarm WHERE state != 'cleared'").fetchall()
        assert sorted(rows) == sorted((a.id, str(a.state)) for a in self.rig.engine.active())
        assert all(a.state != AlarmState.CLEARED for a in self.rig.engine.active())


EngineMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_engine_state_machine = EngineMachine.TestCase
