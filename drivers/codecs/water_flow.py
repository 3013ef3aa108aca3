"""Wireless water-flow sensor on a riser or hydrant branch, codec "water_flow_v1": flow on/off,
duration, pulse count, flow rate, battery. Layout in README.md (no public vendor codec: protocols.md §4)."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.codecs import CodecMeta
from drivers.codecs.fields import bits, event, pack_bits, raw, reading, reason, scaled, still_alarming, unpack
from gateway.model import EventKind, Item

NAME = "water_flow_v1"
FORMAT = "<BBIHHB"  # reason, status, pulses, duration s, rate 0.1 L/s, battery %
REASONS = ("heartbeat", "flow_started", "flow_stopped", "battery_low", "tamper", "power_on")
STATUS = ("flowing", "battery_low", "tamper")
NO_RATE, NO_PCT = 0xFFFF, 0xFF
k = EventKind
# Flow in a fire riser is an alarm signal (GB/T 26875.3 part type 96 "water-flow indicator"); the rules
# correlate it with smoke ("fire confirmed") or its absence ("hydrant misuse").
SIMPLE = {
    "heartbeat": (k.HEARTBEAT, ""), "power_on": (k.HEARTBEAT, "power_on"),
    "flow_started": (k.ALARM, "water_flow"), "flow_stopped": (k.ALARM_CLEARED, "water_flow"),
    "battery_low": (k.BATTERY_LOW, "battery"), "tamper": (k.TAMPER, "tamper"),
}


@dataclass(frozen=True)
class FlowReport:
    reason: str = "heartbeat"
    status: dict[str, bool] = field(default_factory=dict)
    pulses: int = 0  # running total since power-on
    duration_s: int = 0  # of the current flow (flowing) or the last one (stopped)
    flow_l_s: float | None = None  # 0.1 L/s steps
    battery_pct: int | None = None


def encode(r: FlowReport) -> bytes:
    return bytes([REASONS.index(r.reason), pack_bits(STATUS, r.status)]) + r.pulses.to_bytes(4, "little") + \
        r.duration_s.to_bytes(2, "little") + raw(r.flow_l_s, 0.1, NO_RATE).to_bytes(2, "little") + \
        bytes([NO_PCT if r.battery_pct is None else r.battery_pct])


def parse(payload: bytes) -> FlowReport:
    why, status, pulses, duration, rate, pct = unpack(NAME, FORMAT, payload)
    return FlowReport(reason(NAME, REASONS, why), bits(status, STATUS), pulses, duration,
                      scaled(rate, 0.1, NO_RATE, 1), None if pct == NO_PCT or pct > 100 else pct)


def decode(payload: bytes, meta: CodecMeta) -> list[Item]:
    r = parse(payload)
    kind, code = SIMPLE[r.reason]
    detail = {"duration_s": r.duration_s} if r.reason in ("flow_started", "flow_stopped") else {}
    out: list[Item] = [reading(meta, {**r.status, "pulses": r.pulses, "duration_s": r.duration_s, "flow_l_s": r.flow_l_s,
                                      "battery_pct": r.battery_pct}),
                       event(meta, kind, code, **detail)]
    return out + still_alarming(meta, r.status, {"flowing": "water_flow"}, out)
