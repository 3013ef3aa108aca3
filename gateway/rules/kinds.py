"""The explicit table of rule kinds: rule class -> evaluator, and the device index the engine dispatches by."""

from __future__ import annotations

from typing import Any

from gateway.model import Device
from gateway.rules.correlate import CorrelateEvaluator
from gateway.rules.event import EventEvaluator
from gateway.rules.inactivity import InactivityEvaluator
from gateway.rules.match import Evaluator, selects
from gateway.rules.offline import OfflineEvaluator
from gateway.rules.rate import RateEvaluator
from gateway.rules.schema import CorrelateRule, EventRule, InactivityRule, OfflineRule, RateRule, ThresholdRule
from gateway.rules.threshold import ThresholdEvaluator


def watches(rule: Any, device: Device) -> bool:
    if isinstance(rule, CorrelateRule):
        return selects(rule.a, device) or selects(rule.b, device)
    if isinstance(rule, InactivityRule):
        return any(selects(s, device) for s in rule.sources)
    return selects(rule, device)


def build(rules: tuple[Any, ...], devices: dict[str, Device], now: float, clock: Any = None) -> list[Evaluator]:
    """`clock` (gateway.clock.Clock) for the rule kinds that read the hour of day (inactivity)."""
    out: list[Evaluator] = []
    for rule in rules:
        if isinstance(rule, EventRule):
            out.append(EventEvaluator(rule))
        elif isinstance(rule, ThresholdRule):
            out.append(ThresholdEvaluator(rule))
        elif isinstance(rule, RateRule):
            out.append(RateEvaluator(rule))
        elif isinstance(rule, OfflineRule):
            out.append(OfflineEvaluator(rule, [d for d in devices.values() if selects(rule, d)], now))
        elif isinstance(rule, CorrelateRule):
            out.append(CorrelateEvaluator(rule))
        elif isinstance(rule, InactivityRule):
            out.append(InactivityEvaluator(rule, [d for d in devices.values() if watches(rule, d)], now, clock))
        else:  # a new kind in schema.Rule without an evaluator here is a programming error
            raise TypeError(f"no evaluator for rule kind {type(rule).__name__}")
    return out


def index(evaluators: list[Evaluator], devices: dict[str, Device]) -> dict[str, list[Evaluator]]:
    """device id -> the evaluators that watch it, in config order (dispatch is one dict lookup)."""
    return {d.id: [ev for ev in evaluators if watches(ev.rule, d)] for d in devices.values()}

