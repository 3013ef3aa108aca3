"""Household combustible-gas detector (GB 15322) report, codec "gas_v1": concentration %LEL,
low/high alarm level, sensor fault / end of life, mains power, valve and relay state. Layout in README.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.codecs import CodecMeta
from drivers.codecs.fields import bits, event, pack_bits, raw, reading, reason, scaled, set_names, still_alarming, unpack
from gateway.model import EventKind, Item

NAME = "gas_v1"
FORMAT = "<BBBHB"  # reason, status, faults, concentration 0.1 %LEL, sensor life left (months)
REASONS = ("heartbeat", "alarm_low", "alarm_high", "alarm_cleared", "fault", "fault_cleared",
           "end_of_life", "power_on", "mains_lost", "mains_restored", "valve_closed", "valve_opened", "self_test")
STATUS = ("alarm_low", "alarm_high", "valve_closed", "relay_on", "mains_ok")
FAULTS = ("sensor", "end_of_life", "valve")
NO_LEL, NO_LIFE = 0xFFFF, 0xFF
k = EventKind
# reason -> (kind, code). Set points (GB/T 50493-2019: level 1 <= 25 %LEL, level 2 <= 50 %LEL) are the
# detector's; the gateway reports its verdict and the concentration.
SIMPLE = {
    "heartbeat": (k.HEARTBEAT, ""), "power_on": (k.HEARTBEAT, "power_on"),
    "alarm_low": (k.ALARM, "gas_low"), "alarm_high": (k.ALARM, "gas_high"),
    "alarm_cleared": (k.ALARM_CLEARED, ""),  # no code: clears gas_low and gas_high alike
    "fault_cleared": (k.FAULT_CLEARED, ""), "end_of_life": (k.FAULT, "end_of_life"),
    "mains_lost": (k.FAULT, "mains_lost"), "mains_restored": (k.FAULT_CLEARED, "mains_lost"),
    "valve_closed": (k.HEARTBEAT, "valve_closed"), "valve_opened": (k.HEARTBEAT, "valve_opened"),
    "self_test": (k.TEST, "self_test"),
}


@dataclass(frozen=True)
class GasReport:
    reason: str = "heartbeat"
    status: dict[str, bool] = field(default_factory=dict)
    faults: tuple[str, ...] = ()
    gas_lel_pct: float | None = None  # 0.1 %LEL steps
    life_months: int | None = None


def encode(r: GasReport) -> bytes:
    return bytes([REASONS.index(r.reason), pack_bits(STATUS, r.status), pack_bits(FAULTS, {f: True for f in r.faults})]) + \
        raw(r.gas_lel_pct, 0.1, NO_LEL).to_bytes(2, "little") + bytes([NO_LIFE if r.life_months is None else r.life_months])


def parse(payload: bytes) -> GasReport:
    why, status, faults, lel, life = unpack(NAME, FORMAT, payload)
    return GasReport(reason(NAME, REASONS, why), bits(status, STATUS), set_names(faults, FAULTS),
                     scaled(lel, 0.1, NO_LEL, 1), None if life == NO_LIFE else life)


def decode(payload: bytes, meta: CodecMeta) -> list[Item]:
    r = parse(payload)
    out: list[Item] = [reading(meta, {**r.status, **{f"fault_{f}": f in r.faults for f in FAULTS},
                                      "gas_lel_pct": r.gas_lel_pct, "life_months": r.life_months})]
    if r.reason == "fault":
        out += [event(meta, k.FAULT, f) for f in r.faults or ("unspecified",)]
    else:
        kind, code = SIMPLE[r.reason]
        out.append(event(meta, kind, code, **({"gas_lel_pct": r.gas_lel_pct} if kind is k.ALARM and r.gas_lel_pct is not None else {})))
    return out + still_alarming(meta, r.status, {"alarm_low": "gas_low", "alarm_high": "gas_high"}, out)
