"""Simulated LoRa sensors (product code, used by the simulator): each keeps its state flags and frame
counter and builds reports with the real codecs' encoders, so the simulator speaks the exact format."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.codecs import gas, manhole, milesight_care, smoke, water_flow
from drivers.lora.frame import FrameType, encode

# reason -> status flags it sets (True) or clears (False), per sensor kind.
EFFECTS: dict[str, dict[str, dict[str, bool]]] = {
    "smoke": {"alarm": {"alarm": True}, "alarm_cleared": {"alarm": False, "silenced": False},
              "silenced": {"silenced": True}, "silenced_remote": {"silenced": True},
              "removed_from_base": {"removed_from_base": True}, "base_restored": {"removed_from_base": False},
              "battery_low": {"battery_low": True}},
    "gas": {"alarm_low": {"alarm_low": True}, "alarm_high": {"alarm_high": True, "valve_closed": True},
            "alarm_cleared": {"alarm_low": False, "alarm_high": False}, "mains_lost": {"mains_ok": False},
            "mains_restored": {"mains_ok": True}, "valve_closed": {"valve_closed": True}, "valve_opened": {"valve_closed": False}},
    "water_flow": {"flow_started": {"flowing": True}, "flow_stopped": {"flowing": False}, "battery_low": {"battery_low": True}},
    "manhole": {"tilt": {"tilt": True}, "tilt_cleared": {"tilt": False}, "opened": {"opened": True, "tilt": True},
                "closed": {"opened": False, "tilt": False}, "water_high": {"water_high": True},
                "water_normal": {"water_high": False}, "battery_low": {"battery_low": True}},
}


class SensorCodec(Protocol):
    """What the simulator uses of a LoRa sensor codec module (smoke, gas, water_flow, manhole)."""

    @property
    def REASONS(self) -> tuple[str, ...]: ...
    @property
    def STATUS(self) -> tuple[str, ...]: ...

    # Any: each module encodes its own report class (SmokeReport, GasReport ...), which _report builds
    # by name from keyword values; a Protocol cannot name "the report class of this module".
    def encode(self, r: Any) -> bytes: ...


CODECS: dict[str, SensorCodec] = {"smoke": smoke, "gas": gas, "water_flow": water_flow, "manhole": manhole}
HEARTBEAT_S = {"smoke": 12 * 3600.0, "gas": 4 * 3600.0, "water_flow": 6 * 3600.0, "manhole": 6 * 3600.0,  # protocols.md §4
               "sos_button": 18 * 3600.0, "door_contact": 18 * 3600.0, "water_meter": 3600.0}  # Milesight defaults


@dataclass
class SimSensor:
    device_id: int
    kind: str  # smoke | gas | water_flow | manhole
    key: bytes | None = None  # None: keyless (CRC-16 frames)
    encrypt: bool = False
    heartbeat_s: float = 0.0  # 0: the kind's real period
    rssi_dbm: int = -85
    fcnt: int = 0
    status: dict[str, bool] = field(default_factory=dict)
    sent: list[bytes] = field(default_factory=list)  # every frame sent, for replay faults
    commands: list[str] = field(default_factory=list)  # downlink commands it received
    counts: dict[str, int] = field(default_factory=dict)  # Milesight kinds: door state, pulse total

    def __post_init__(self) -> None:
        if self.kind in milesight_care.SIM_REASONS:  # care devices (issue 22): Milesight channel payloads
            self.heartbeat_s = self.heartbeat_s or HEARTBEAT_S[self.kind]
            return
        if self.kind not in CODECS:
            raise ValueError(f"unknown sensor kind {self.kind!r} (known: {', '.join(CODECS)})")
        self.heartbeat_s = self.heartbeat_s or HEARTBEAT_S[self.kind]
        if self.kind == "gas":
            self.status.setdefault("mains_ok", True)

    def report(self, reason: str = "heartbeat", **values: float) -> bytes:
        """The next uplink frame: apply the reason's effects, encode with the codec, count."""
        if self.kind in milesight_care.SIM_REASONS:
            if reason not in milesight_care.SIM_REASONS[self.kind]:
                raise ValueError(f"{self.kind} sensors have no report {reason!r} (known: {', '.join(milesight_care.SIM_REASONS[self.kind])})")
            return self.frame(FrameType.REPORT, milesight_care.sim_payload(self.kind, reason, self.counts))
        codec = CODECS[self.kind]
        if reason not in codec.REASONS:
            raise ValueError(f"{self.kind} sensors have no report {reason!r} (known: {', '.join(codec.REASONS)})")
        self.status.update(EFFECTS[self.kind].get(reason, {}))
        return self.frame(FrameType.REPORT, codec.encode(self._report(codec, reason, values)))

    def frame(self, ftype: FrameType, payload: bytes) -> bytes:
        raw = encode(self.device_id, self.fcnt, ftype, payload, self.key, self.encrypt)
        self.fcnt = (self.fcnt + 1) & 0xFFFF
        self.sent.append(raw)
        return raw

    def _report(self, codec: SensorCodec, reason: str, values: dict[str, float]) -> object:
        cls = {"smoke": smoke.SmokeReport, "gas": gas.GasReport, "water_flow": water_flow.FlowReport,
               "manhole": manhole.TiltReport}[self.kind]
        names = {f.name for f in dataclasses.fields(cls)}
        defaults = {"battery_pct": 95, "battery_mv": 3010, "temperature_c": 21.5, "smoke_db_m": 0.02,
                    "gas_lel_pct": 0.0, "life_months": 60, "z_deg": 0.5}
        if self.status.get("alarm"):
            defaults["smoke_db_m"] = 0.35
        if self.status.get("alarm_high") or self.status.get("alarm_low"):
            defaults["gas_lel_pct"] = 30.0
        if self.status.get("opened"):
            defaults["x_deg"] = 95.0
        args = {k: v for k, v in {**defaults, **values}.items() if k in names}
        return cls(reason=reason, status={n: self.status.get(n, False) for n in codec.STATUS}, **args)
