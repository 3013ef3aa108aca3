"""Per-device radio health of the LoRa driver: last RSSI/SNR, last seen, frames, rejects by reason.
Feeds `gateway devices` and the installer's `gateway lora listen`; `heard` shapes a frame for the lora_listen tap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.base import Heard
from drivers.lora.frame import CRC_BYTES, FLAG_KEYLESS, HEADER_BYTES, MIC_BYTES, SYNC, Frame


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


def heard(port: str, item: Any, verdict: str, devices: dict[int, Any]) -> Heard:
    """What `lora_listen` reports of one deframer result (a Frame, or a FrameError whose bytes start at
    the sync byte). A rejected candidate's id and length come from its header when it got that far; its
    RSSI byte was never separated from the payload, so it has none."""
    if isinstance(item, Frame):
        dev = devices.get(item.device_id)
        return Heard(port, f"{item.device_id:08x}", dev.id if dev else "", verdict, item.wire_bytes, item.type.name.lower(),
                     item.fcnt, item.rssi_dbm)
    data: bytes = item.data if item.data[:1] == bytes([SYNC]) else b""  # an overflow's bytes are no header
    addr = int.from_bytes(data[3:7], "little") if len(data) >= 7 else None
    dev = devices.get(addr) if addr is not None else None
    length = HEADER_BYTES + data[2] + (CRC_BYTES if data[1] & FLAG_KEYLESS else MIC_BYTES) if len(data) >= 3 else len(item.data)
    fcnt = int.from_bytes(data[7:9], "little") if len(data) >= 9 else None
    return Heard(port, f"{addr:08x}" if addr is not None else "", dev.id if dev else "", verdict, length, "", fcnt)
