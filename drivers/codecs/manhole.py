"""Manhole-cover tilt sensor, codec "manhole_v1": x/y/z tilt angles (0.01°, as Milesight EM310-TILT),
threshold flags, opened, water-level overflow, battery. Layout in README.md."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.codecs import CodecMeta
from drivers.codecs.fields import bits, event, pack_bits, raw, reading, reason, scaled, still_alarming, unpack
from gateway.model import EventKind, Item

NAME = "manhole_v1"
FORMAT = "<BBhhhBB"  # reason, status, x, y, z (0.01°), battery %, alarm threshold (°)
REASONS = ("heartbeat", "tilt", "tilt_cleared", "opened", "closed", "water_high", "water_normal", "battery_low", "power_on")
# tilt: |angle - reference| > threshold (default 10°); opened: above 90° unconditionally (protocols.md §4).
STATUS = ("tilt", "opened", "water_high", "battery_low")
NO_PCT = 0xFF
k = EventKind
SIMPLE = {
    "heartbeat": (k.HEARTBEAT, ""), "power_on": (k.HEARTBEAT, "power_on"),
    "tilt": (k.ALARM, "cover_tilt"), "tilt_cleared": (k.ALARM_CLEARED, "cover_tilt"),
    "opened": (k.ALARM, "cover_opened"), "closed": (k.ALARM_CLEARED, "cover_opened"),
    "water_high": (k.ALARM, "water_level"), "water_normal": (k.ALARM_CLEARED, "water_level"),
    "battery_low": (k.BATTERY_LOW, "battery"),
}


@dataclass(frozen=True)
class TiltReport:
    reason: str = "heartbeat"
    status: dict[str, bool] = field(default_factory=dict)
    x_deg: float = 0.0
    y_deg: float = 0.0
    z_deg: float = 0.0
    battery_pct: int | None = None
    threshold_deg: int = 10


def encode(r: TiltReport) -> bytes:
    angles = b"".join(raw(a, 0.01, 0).to_bytes(2, "little", signed=True) for a in (r.x_deg, r.y_deg, r.z_deg))
    return bytes([REASONS.index(r.reason), pack_bits(STATUS, r.status)]) + angles + \
        bytes([NO_PCT if r.battery_pct is None else r.battery_pct, r.threshold_deg])


def parse(payload: bytes) -> TiltReport:
    why, status, x, y, z, pct, threshold = unpack(NAME, FORMAT, payload)
    x_deg, y_deg, z_deg = (scaled(a, 0.01, None) for a in (x, y, z))  # no "not measured" value: always a number
    return TiltReport(reason(NAME, REASONS, why), bits(status, STATUS), x_deg, y_deg, z_deg,
                      None if pct == NO_PCT or pct > 100 else pct, threshold)


def decode(payload: bytes, meta: CodecMeta) -> list[Item]:
    r = parse(payload)
    kind, code = SIMPLE[r.reason]
    angles = {"x_deg": r.x_deg, "y_deg": r.y_deg, "z_deg": r.z_deg}
    out: list[Item] = [reading(meta, {**r.status, **angles, "battery_pct": r.battery_pct, "threshold_deg": r.threshold_deg}),
                       event(meta, kind, code, **(angles if kind is k.ALARM else {}))]
    flags = {"tilt": "cover_tilt", "opened": "cover_opened", "water_high": "water_level"}
    return out + still_alarming(meta, r.status, flags, out)
