"""Per-device radio health of the LoRa driver: last RSSI/SNR, last seen, frames, rejects by reason.
Feeds `gateway devices` and the installer's `gateway lora listen`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DeviceRadio:
    device_id: str
    frames: int = 0
    last_rssi_dbm: int | None = None
    last_snr_db: float | None = None  # the E22 UART reports no SNR; kept for the GWMP path
    last_seen_wall_s: float | None = None
    last_fcnt: int | None = None
    counter_resets: int = 0
    rejects: dict[str, int] = field(default_factory=dict)

    def seen(self, fcnt: int, rssi_dbm: int | None, wall_s: float) -> None:
        self.frames += 1
        self.last_fcnt = fcnt
        self.last_seen_wall_s = wall_s
        if rssi_dbm is not None:
            self.last_rssi_dbm = rssi_dbm

    def reject(self, reason: str) -> None:
        self.rejects[reason] = self.rejects.get(reason, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {"frames": self.frames, "last_rssi_dbm": self.last_rssi_dbm, "last_snr_db": self.last_snr_db,
                "last_seen_wall_s": self.last_seen_wall_s, "last_fcnt": self.last_fcnt,
                "counter_resets": self.counter_resets, "rejects": dict(self.rejects)}


def bump(counters: dict[str, int], name: str, n: int = 1) -> None:
    counters[name] = counters.get(name, 0) + n
