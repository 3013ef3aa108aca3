"""Independent smoke alarm (GB 20517) report, codec "smoke_v1": alarm/cleared, silence, self-test,
faults, removed from base, battery, smoke density, temperature, heartbeat. Layout in README.md.

Shared with NB-IoT smoke detectors: the event codes and field names here are the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.codecs import CodecMeta
from drivers.codecs.fields import bits, event, pack_bits, raw, reading, reason, scaled, set_names, still_alarming, unpack
from gateway.model import EventKind, Item

NAME = "smoke_v1"
FORMAT = "<BBBBHHh"  # reason, status, faults, battery %, battery mV, density 0.01 dB/m, temperature 0.1 °C
REASONS = ("heartbeat", "alarm", "alarm_cleared", "silenced", "self_test", "fault", "fault_cleared",
           "removed_from_base", "base_restored", "battery_low", "power_on", "silenced_remote")
STATUS = ("alarm", "silenced", "removed_from_base", "battery_low", "testing")
# GB 20517-2025 §5.11 fault classes; each becomes a FAULT event code.
FAULTS = ("smoke_chamber", "chamber_fouled", "buzzer", "sensor", "obstruction")
NO_PCT, NO_MV, NO_DENSITY, NO_TEMP = 0xFF, 0, 0xFFFF, 0x7FFF


@dataclass(frozen=True)
class SmokeReport:
    reason: str = "heartbeat"
    status: dict[str, bool] = field(default_factory=dict)  # names from STATUS
    faults: tuple[str, ...] = ()  # names from FAULTS
    battery_pct: int | None = None
    battery_mv: int | None = None
    smoke_db_m: float | None = None  # smoke density, dB/m (0.01 steps)
    temperature_c: float | None = None  # 0.1 °C steps


def encode(r: SmokeReport) -> bytes:
    """The detector's side (simulators): a report as the sensor firmware sends it."""
    return bytes([REASONS.index(r.reason), pack_bits(STATUS, r.status), pack_bits(FAULTS, {f: True for f in r.faults}),
                  NO_PCT if r.battery_pct is None else r.battery_pct]) + \
        (r.battery_mv or NO_MV).to_bytes(2, "little") + raw(r.smoke_db_m, 0.01, NO_DENSITY).to_bytes(2, "little") + \
        raw(r.temperature_c, 0.1, NO_TEMP).to_bytes(2, "little", signed=True)


def parse(payload: bytes) -> SmokeReport:
    why, status, faults, pct, mv, density, temp = unpack(NAME, FORMAT, payload)
    return SmokeReport(
        reason(NAME, REASONS, why), bits(status, STATUS), set_names(faults, FAULTS),
        None if pct == NO_PCT or pct > 100 else pct, mv or None,
        scaled(density, 0.01, NO_DENSITY), scaled(temp, 0.1, NO_TEMP, 1),
    )


def decode(payload: bytes, meta: CodecMeta) -> list[Item]:
    r = parse(payload)
    items: list[Item] = [reading(meta, {
        **r.status, **{f"fault_{f}": f in r.faults for f in FAULTS},
        "battery_pct": r.battery_pct, "battery_mv": r.battery_mv,
        "smoke_db_m": r.smoke_db_m, "temperature_c": r.temperature_c,
    })]
    return items + events(r, meta)


def events(r: SmokeReport, meta: CodecMeta) -> list[Item]:
    """The report reason as Events (codes documented in drivers/codecs/README.md)."""
    k = EventKind
    simple = {
        "heartbeat": (k.HEARTBEAT, ""), "power_on": (k.HEARTBEAT, "power_on"),
        "alarm": (k.ALARM, "smoke"), "alarm_cleared": (k.ALARM_CLEARED, "smoke"),
        "silenced": (k.SILENCED, "local"), "silenced_remote": (k.SILENCED, "remote"),
        "self_test": (k.TEST, "self_test"), "fault_cleared": (k.FAULT_CLEARED, ""),
        "removed_from_base": (k.TAMPER, "removed_from_base"), "base_restored": (k.TAMPER, "base_restored"),
        "battery_low": (k.BATTERY_LOW, "battery"),
    }
    out: list[Item] = []
    if r.reason == "fault":
        out += [event(meta, k.FAULT, f) for f in r.faults or ("unspecified",)]
    else:
        kind, code = simple[r.reason]
        out.append(event(meta, kind, code))
    return out + still_alarming(meta, r.status, {"alarm": "smoke"}, out)
