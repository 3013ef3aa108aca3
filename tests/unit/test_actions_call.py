"""Phone-call escalation through the engine (issue 22), a fake ActionContext with `call` at the edge: key 1
acknowledges (who and when recorded and uplinked), no answer / busy -> next contact, tiers with calls,
a failing modem retried, SMS policy untouched, SOS press -> alarm -> SMS + call."""

from __future__ import annotations

import pytest

from drivers.base import CallOutcome
from gateway.actions.call import CallContext, spoken_text
from gateway.actions.schema import Call, Notify, Sounder, Tier
from gateway.errors import ModemUnavailable
from gateway.model import AlarmState, ContactRole, EventKind
from tests.unit.rules_support import CONTACTS, FakeContext

CONTACTS_BY_ID = {c.id: c for c in CONTACTS}
from tests.unit.test_rules_engine import SMOKE as SMOKE_SMS_ONLY  # noqa: E402
from tests.unit.test_rules_engine import Rig  # noqa: E402

SMOKE = {**SMOKE_SMS_ONLY, "actions": ["sounder", "sms", "call"]}

R, G, W, S, C = ContactRole.RELATIVE, ContactRole.GUARD_ROOM, ContactRole.GRID_WORKER, ContactRole.SAFETY_MANAGER, ContactRole.STREET_CENTER
SON, GUARD, GRID, SAFETY, STREET = "+8613800000005", "+8613800000001", "+8613800000002", "+8613800000003", "+8613800000004"


class CallingContext(FakeContext):
    """FakeContext that can also call: each number answers as scripted (default: no answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.script: dict[str, str] = {}
        self.fail_calls = 0  # the next N calls raise ModemUnavailable
        self.preemptible: list[bool] = []  # what each call was placed with
        self.once: dict[str, str] = {}  # number -> the outcome of its next call only (before `script`)

    async def call(self, number: str, text: str, ring_timeout_s: float, key_wait_s: float, preemptible: bool = False) -> CallOutcome:
        if self.fail_calls:
            self.fail_calls -= 1
            raise ModemUnavailable("module rebooted (RDY)")
        self.calls.append((number, text))
        self.preemptible.append(preemptible)
        result = self.once.pop(number, None) or self.script.get(number, "no_answer")
        return CallOutcome(result, key="1" if result == "acknowledged" else "")


def _notify(*tiers: Tier, **call_kw) -> Notify:
    return Notify(sounder=Sounder(device="guard-relay"), tiers=tiers, call=Call(min_interval_s=0, **call_kw))


TIERS_CALL_FIRST = (
    Tier(after_s=0, roles=(R, G, W), actions=("sms", "call")),
    Tier(after_s=300, roles=(S,), actions=("call",)),
    Tier(after_s=600, roles=(C,), actions=("sms", "call")),
)


@pytest.fixture
async def crig(tmp_path):
    rig = Rig(tmp_path, rule_dicts=(SMOKE,), notify=_notify(*TIERS_CALL_FIRST), ctx=CallingContext())
    await rig.engine.start()
    await rig.settle()
    yield rig
    await rig.engine.stop()
    rig.outbox.close()


async def _raise_smoke(rig):
    await rig.engine.on_item(rig.feed.event("smoke-401", EventKind.ALARM, "smoke"))
    await rig.settle()


async def _calls_settle(rig, rounds=8):
    """Each tick starts the next call of an alarm; a few ticks walk through a tier's contacts."""
    for _ in range(rounds):
        await rig.tick(0.25)


def test_the_spoken_text_is_the_message_twice_then_the_prompt():
    text = spoken_text(Notify(), *_alarm_for_text())
    message = "这里是新鸿社区3号院社区消防。2栋1单元401，烟感报警，时间03:12。"
    assert text == message + message + "确认请按1。"


def _alarm_for_text():
    from gateway.clock import ManualClock
    from gateway.model import Alarm, Severity
    from tests.unit.rules_support import DEVICES

    clock = ManualClock(wall_s=1_795_893_120.0)
    alarm = Alarm("a1", "smoke", "smoke-401", Severity.CRITICAL, AlarmState.RAISED, "烟感报警", clock.now(), clock.now())
    ident = type("Ident", (), {"community": "新鸿社区", "courtyard": "3号院"})()
    return alarm, DEVICES["smoke-401"], ident, 0.0


async def test_answered_and_key_1_acknowledges_recorded_and_uplinked(crig):
    assert isinstance(crig.ctx, CallContext)
    crig.ctx.script[SON] = "acknowledged"
    await _raise_smoke(crig)
    await _calls_settle(crig)
    (alarm,) = crig.engine.active()
    assert alarm.state == AlarmState.ACKNOWLEDGED and alarm.acknowledged_by == "call:wang-son"
    assert [n for n, _ in crig.ctx.calls] == [SON]  # acknowledged: nobody else is called
    acks = [b for _, k, _, b in crig.outbox.records("alarm.") if k == "alarm.acknowledged"]
    assert [(b["by"], b["alarm_id"]) for b in acks] == [("call:wang-son", alarm.id)]
    assert {n for n, _ in crig.ctx.sms} == {SON, GUARD, GRID}  # the SMS of tier 0 went out as well
    assert "确认请按1" in crig.ctx.calls[0][1]


async def test_no_answer_and_busy_go_to_the_next_contact(crig):
    crig.ctx.script.update({SON: "no_answer", GUARD: "busy", GRID: "acknowledged"})
    await _raise_smoke(crig)
    await _calls_settle(crig)
    assert [n for n, _ in crig.ctx.calls] == [SON, GUARD, GRID]
    assert crig.engine.active()[0].acknowledged_by == "call:grid-li"
    assert crig.engine.calls.counters["calls_unanswered"] == 2


async def test_escalation_tiers_with_calls_until_someone_acknowledges(crig):
    crig.ctx.script[STREET] = "acknowledged"
    await _raise_smoke(crig)
    await _calls_settle(crig)
    assert [n for n, _ in crig.ctx.calls] == [SON, GUARD, GRID]  # tier 0, nobody answered
    await crig.tick(300)
    await _calls_settle(crig)
    assert [n for n, _ in crig.ctx.calls][3:] == [SAFETY]  # tier 1 calls only: no SMS to the manager
    assert SAFETY not in {n for n, _ in crig.ctx.sms}
    await crig.tick(300)
    await _calls_settle(crig)
    assert [n for n, _ in crig.ctx.calls][4:] == [STREET]
    assert crig.engine.active()[0].acknowledged_by == "call:street"
    await crig.tick(600)
    await _calls_settle(crig)
    assert len(crig.ctx.calls) == 5  # acknowledged: no more calls, ever


async def test_a_failing_modem_is_retried_and_reported_once(tmp_path):
    rig = Rig(tmp_path, rule_dicts=(SMOKE,), notify=_notify(TIERS_CALL_FIRST[0], retry_s=30), ctx=CallingContext())
    await rig.engine.start()
    try:
        rig.ctx.fail_calls = 1
        rig.ctx.script[SON] = "acknowledged"
        await _raise_smoke(rig)
        await _calls_settle(rig, 2)
        faults = [b for _, k, _, b in rig.outbox.records("event.") if b.get("code") == "call_failed"]
        assert len(faults) == 1 and rig.ctx.calls[0][0] == GUARD  # the son's call failed, the guard is next
        await rig.tick(30)
        await _calls_settle(rig, 2)
        assert SON in [n for n, _ in rig.ctx.calls]
    finally:
        await rig.engine.stop()
        rig.outbox.close()


SMS_ONLY = {
    "rule_without_call_in_its_actions": (SMOKE_SMS_ONLY, True, True),
    "no_tier_calls": (SMOKE, False, True),
    "context_that_cannot_call": (SMOKE, True, False),
}


@pytest.mark.parametrize("rule,calling_tiers,can_call", SMS_ONLY.values(), ids=SMS_ONLY.keys())
async def test_nothing_is_called_and_the_sms_still_go(tmp_path, rule, calling_tiers, can_call):
    notify = _notify(*TIERS_CALL_FIRST) if calling_tiers else Notify(sounder=Sounder(device="guard-relay"))
    rig = Rig(tmp_path, rule_dicts=(rule,), notify=notify, ctx=CallingContext() if can_call else FakeContext())
    await rig.engine.start()
    try:
        await _raise_smoke(rig)
        await _calls_settle(rig, 2)
        assert getattr(rig.ctx, "calls", []) == [] and {n for n, _ in rig.ctx.sms} == {SON, GUARD, GRID}
    finally:
        await rig.engine.stop()
        rig.outbox.close()


SOS_RULE = {"kind": "event", "id": "sos", "severity": "critical", "title": "一键呼叫求助", "types": ["sos_button"],
            "events": ["alarm"], "codes": ["sos"], "actions": ["sounder", "sms", "call"]}


async def test_sos_press_raises_a_critical_alarm_with_sms_and_a_call(tmp_path):
    from drivers.codecs import CodecMeta
    from drivers.codecs.registry import CODECS
    from gateway.model import DeviceType
    from tests.unit import rules_support

    sos = rules_support.device("sos-401", DeviceType.SOS_BUTTON, contacts=("wang-son",), profile="lora_sos_ws101")
    devices = {**rules_support.DEVICES, "sos-401": sos}
    rig = Rig(tmp_path, rule_dicts=(SOS_RULE,), notify=_notify(*TIERS_CALL_FIRST), ctx=CallingContext())
    rig.engine = type(rig.engine)(rules_support.rules([SOS_RULE]), devices, rig.outbox, rig.ctx, rig.clock,
                                  rig.engine.log, notify=rig.notify, contacts=rules_support.CONTACTS,
                                  identity=type("I", (), {"community": "新鸿社区", "courtyard": "3号院"})())
    await rig.engine.start()
    try:
        rig.ctx.script[SON] = "acknowledged"
        for item in CODECS["milesight_ws101"](bytes([0x01, 0x75, 0x50, 0xFF, 0x2E, 0x01]), CodecMeta("sos-401", rig.clock.now(), "lora")):
            await rig.engine.on_item(item)
        await rig.settle()
        (alarm,) = rig.engine.active()
        assert (alarm.rule, alarm.severity.name, alarm.device_id) == ("sos", "CRITICAL", "sos-401")
        await _calls_settle(rig, 2)
        assert SON in {n for n, _ in rig.ctx.sms} and [n for n, _ in rig.ctx.calls] == [SON]
        assert "一键呼叫求助" in rig.ctx.calls[0][1] and rig.engine.active()[0].acknowledged_by == "call:wang-son"
    finally:
        await rig.engine.stop()
        rig.outbox.close()


async def test_a_key_press_after_the_alarm_was_cleared_is_no_fault(crig):
    crig.ctx.script[SON] = "acknowledged"
    await _raise_smoke(crig)
    (alarm,) = crig.engine.active()
    await crig.engine.clear(alarm.id, "cli:test")  # cleared while the son's phone rings
    await crig.engine.calls._call((alarm.id, 0, "call:wang-son"), CONTACTS_BY_ID["wang-son"], "text", 0.0)
    assert crig.engine.calls.counters["calls_acknowledged"] >= 1
    assert not [b for _, _, _, b in crig.outbox.records("event.") if b.get("code") == "call_failed"]


async def test_a_call_hung_up_for_a_fire_sms_is_placed_again_and_critical_texts_are_urgent(crig):
    """A preempted call (the module hung it up for a critical alarm's SMS) is owed again: the same contact
    is called at the next pump, nothing is recorded as answered. A critical alarm's own calls are not
    preemptible and its SMS are urgent (tests/integration/test_call_preemption.py: the driver's side)."""
    crig.ctx.once[SON] = "preempted"
    crig.ctx.script[SON] = "acknowledged"
    await _raise_smoke(crig)
    await _calls_settle(crig)
    (alarm,) = crig.engine.active()
    assert alarm.acknowledged_by == "call:wang-son"
    assert [n for n, _ in crig.ctx.calls] == [SON, SON]  # called again, nobody skipped
    assert crig.engine.calls.counters["calls_preempted"] == 1
    assert set(crig.ctx.preemptible) == {False}  # smoke is critical: its calls hold the module
    assert set(crig.ctx.urgent_sms) == {SON, GUARD, GRID}  # and its texts go first


async def test_a_lower_alarms_calls_are_preemptible_and_its_texts_are_not_urgent(tmp_path):
    rig = Rig(tmp_path, rule_dicts=({**SMOKE, "severity": "major"},), notify=_notify(*TIERS_CALL_FIRST), ctx=CallingContext())
    rig.ctx.down_s = 3600.0  # the uplink is down: a major alarm's SMS policy texts then
    await rig.engine.start()
    try:
        await _raise_smoke(rig)
        await _calls_settle(rig)
        assert rig.ctx.calls and set(rig.ctx.preemptible) == {True}
        assert rig.ctx.sms and rig.ctx.urgent_sms == []
    finally:
        await rig.engine.stop()
        rig.outbox.close()
