"""Device sessions of the embedded network server and the frame-counter rules: 32-bit FCnt rebuilt
from the 16 bits on air, replay classification, and the downlink counter reserved ahead of use.

Replay policy (issue 15 item 5, CLARIFICATIONS "Turn 2"): a frame whose MIC verifies with a counter above
the last accepted one is accepted however far ahead; one that verifies only with a counter at or below
the last is a replay suspect. A suspect never moves the counter, so it can never make a later genuine
frame be rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FCNT_EPOCH = 0x10000
FCNT_DOWN_BLOCK = 32  # downlink counters reserved per durable write: a restart skips at most this many


@dataclass
class Session:
    device_id: str
    dev_addr: int
    nwk_skey: bytes
    app_skey: bytes
    otaa: bool
    fcnt_up: int = -1  # last accepted uplink counter (32 bit); -1: none yet
    fcnt_down: int = 0  # next downlink counter to use
    fcnt_down_reserved: int = 0  # persisted high-water mark: after a restart fcnt_down starts here
    rx1_dr_offset: int = 0
    rx_delay_s: int = 1
    joined_wall_s: float | None = None
    confirmed: bool = True  # OTAA: an uplink arrived on this session (the device got the JoinAccept)
    last_mic: bytes = b""  # of the last accepted uplink: its retransmission (same FCnt, same bytes) is not a replay

    def to_json(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "dev_addr": f"{self.dev_addr:08x}", "nwk_skey": self.nwk_skey.hex(),
                "app_skey": self.app_skey.hex(), "otaa": self.otaa, "fcnt_up": self.fcnt_up,
                "fcnt_down": max(self.fcnt_down, self.fcnt_down_reserved), "rx1_dr_offset": self.rx1_dr_offset,
                "rx_delay_s": self.rx_delay_s, "joined_wall_s": self.joined_wall_s, "confirmed": self.confirmed,
                "last_mic": self.last_mic.hex()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Session":
        down = int(obj.get("fcnt_down", 0))
        return cls(str(obj["device_id"]), int(obj["dev_addr"], 16), bytes.fromhex(obj["nwk_skey"]), bytes.fromhex(obj["app_skey"]),
                   bool(obj.get("otaa", False)), int(obj.get("fcnt_up", -1)), down, down, int(obj.get("rx1_dr_offset", 0)),
                   int(obj.get("rx_delay_s", 1)), obj.get("joined_wall_s"), bool(obj.get("confirmed", True)),
                   bytes.fromhex(obj.get("last_mic", "")))

    def next_fcnt_down(self) -> tuple[int, bool]:
        """The counter for the next downlink, and whether the reservation must be persisted (durably)
        before the frame is sent: a reused downlink counter is dropped by the device (§4.3.1.5)."""
        fcnt = self.fcnt_down
        self.fcnt_down += 1
        if self.fcnt_down > self.fcnt_down_reserved:
            self.fcnt_down_reserved = fcnt + FCNT_DOWN_BLOCK
            return fcnt, True
        return fcnt, False


def fcnt_candidates(last: int, fcnt16: int, epochs_ahead: int) -> tuple[list[int], list[int]]:
    """(ahead, behind): 32-bit counters whose low 16 bits are `fcnt16`, above `last` nearest first, and at or
    below it (replay candidates). The MIC covers the full 32-bit counter (§4.4), so exactly one candidate
    verifies for a genuine frame: that is how a rollover past 65,535 is told from a replay."""
    if last < 0:
        return [fcnt16 + k * FCNT_EPOCH for k in range(epochs_ahead)], []
    base = (last & ~0xFFFF) | fcnt16
    if base > last:
        ahead = [base + k * FCNT_EPOCH for k in range(epochs_ahead)]
        behind = [base - FCNT_EPOCH] if base >= FCNT_EPOCH else []
    else:
        ahead = [base + k * FCNT_EPOCH for k in range(1, epochs_ahead + 1)]
        behind = [base] + ([base - FCNT_EPOCH] if base >= FCNT_EPOCH else [])
    return [c for c in ahead if c <= 0xFFFFFFFF], behind


@dataclass
class DeviceRecord:
    """Installer-facing state of one device (`gateway lorawan devices`)."""

    device_id: str
    activation: str  # "abp" | "otaa"
    frames: int = 0
    retransmissions: int = 0
    replay_suspects: int = 0
    joins: int = 0
    last_rssi_dbm: int | None = None
    last_snr_db: float | None = None
    last_seen_wall_s: float | None = None
    battery: int | None = None  # DevStatusAns: 0 external power, 1..254 level
    margin_db: int | None = None
    dev_status_wall_s: float | None = None
    rejects: dict[str, int] = field(default_factory=dict)

    def reject(self, reason: str) -> None:
        self.rejects[reason] = self.rejects.get(reason, 0) + 1

    def snapshot(self, session: Session | None) -> dict[str, Any]:
        return {"activation": self.activation, "joined": session is not None,
                "dev_addr": f"{session.dev_addr:08x}" if session else None,
                "last_fcnt": session.fcnt_up if session and session.fcnt_up >= 0 else None,
                "frames": self.frames, "retransmissions": self.retransmissions, "replay_suspects": self.replay_suspects,
                "joins": self.joins, "last_rssi_dbm": self.last_rssi_dbm, "last_snr_db": self.last_snr_db,
                "last_seen_wall_s": self.last_seen_wall_s, "battery": self.battery, "margin_db": self.margin_db,
                "rejects": dict(self.rejects)}
