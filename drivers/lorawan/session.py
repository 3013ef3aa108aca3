"""Device sessions of the embedded network server: keys, the 32-bit FCnt candidates rebuilt from the
16 bits on air, and the downlink counter reserved ahead of use.

Which candidate is the frame's counter is decided by the MIC (it covers all 32 bits, §4.4); what that
counter means (accept, retransmission, replay suspect, re-sync) is the shared rule of drivers/sequence.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FCNT_EPOCH = 0x10000
MAX_BEHIND_EPOCHS = 2  # replay candidates tried: this epoch and the one before (+ the restarted counter)
FCNT_DOWN_BLOCK = 32  # downlink counters reserved per durable write: a restart skips at most this many


@dataclass
class Session:
    device_id: str
    dev_addr: int
    nwk_skey: bytes
    app_skey: bytes
    otaa: bool
    fcnt_down: int = 0  # next downlink counter to use
    fcnt_down_reserved: int = 0  # persisted high-water mark: after a restart fcnt_down starts here
    rx1_dr_offset: int = 0
    rx_delay_s: int = 1
    joined_wall_s: float | None = None
    confirmed: bool = True  # OTAA: an uplink arrived on this session (the device got the JoinAccept)

    def to_json(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "dev_addr": f"{self.dev_addr:08x}", "nwk_skey": self.nwk_skey.hex(),
                "app_skey": self.app_skey.hex(), "otaa": self.otaa,
                "fcnt_down": max(self.fcnt_down, self.fcnt_down_reserved), "rx1_dr_offset": self.rx1_dr_offset,
                "rx_delay_s": self.rx_delay_s, "joined_wall_s": self.joined_wall_s, "confirmed": self.confirmed}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Session":
        down = int(obj.get("fcnt_down", 0))
        return cls(str(obj["device_id"]), int(obj["dev_addr"], 16), bytes.fromhex(obj["nwk_skey"]), bytes.fromhex(obj["app_skey"]),
                   bool(obj.get("otaa", False)), down, down, int(obj.get("rx1_dr_offset", 0)),
                   int(obj.get("rx_delay_s", 1)), obj.get("joined_wall_s"), bool(obj.get("confirmed", True)))

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
    below it. The MIC covers the full 32-bit counter (§4.4), so one candidate verifies for a genuine frame:
    that is how a rollover past 65,535 is told from a replay. `behind` also holds the plain 16-bit value:
    a device that restarted its counter (ABP battery change) must be recognised to be re-synced."""
    if last < 0:
        return [fcnt16 + k * FCNT_EPOCH for k in range(epochs_ahead)], []
    base = (last & ~0xFFFF) | fcnt16
    first_ahead = base if base > last else base + FCNT_EPOCH
    ahead = [c for c in (first_ahead + k * FCNT_EPOCH for k in range(epochs_ahead)) if c <= 0xFFFFFFFF]
    top = first_ahead - FCNT_EPOCH
    behind = [c for c in (top - k * FCNT_EPOCH for k in range(MAX_BEHIND_EPOCHS)) if c >= 0]
    if fcnt16 <= last and fcnt16 not in behind:
        behind.append(fcnt16)
    return ahead, behind


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

    def snapshot(self, session: Session | None, last_fcnt: int | None) -> dict[str, Any]:
        return {"activation": self.activation, "joined": session is not None,
                "dev_addr": f"{session.dev_addr:08x}" if session else None, "last_fcnt": last_fcnt,
                "frames": self.frames, "retransmissions": self.retransmissions, "replay_suspects": self.replay_suspects,
                "joins": self.joins, "last_rssi_dbm": self.last_rssi_dbm, "last_snr_db": self.last_snr_db,
                "last_seen_wall_s": self.last_seen_wall_s, "battery": self.battery, "margin_db": self.margin_db,
                "rejects": dict(self.rejects)}
