"""Simulated LoRaWAN end devices (the device side of LoRaWAN 1.0.x class A, for the simulator, tests and
the benchmark): ABP or OTAA sessions, frame counters, JoinRequest/JoinAccept, and the Milesight
payloads of the profiles (smoke GS524N, gas GS101, leak WS303, door WS301)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from drivers.codecs import milesight_gs101, milesight_gs524n, milesight_leak, milesight_ws301
from drivers.lorawan import mac

FPORT_MILESIGHT = 85  # Milesight devices report on fPort 85


def payload(kind: str, reason: str) -> bytes:
    """A device report: kind smoke|gas|leak|door, reason heartbeat|alarm|clear|battery_low|test."""
    alarm = reason == "alarm"
    if kind == "smoke":
        message = {"alarm": "alarm", "battery_low": "low_battery", "test": "test_normal_battery"}.get(reason, "normal")
        return milesight_gs524n.encode(message, smoke_pct=12 if alarm else 0)
    if kind == "gas":
        return milesight_gs101.encode(gas_status=int(alarm), valve=int(alarm), relay=int(alarm))
    if kind == "leak":
        return milesight_leak.encode_ws303(alarm, battery_pct=15 if reason == "battery_low" else 100)
    if kind == "door":
        return milesight_ws301.encode(alarm)
    raise ValueError(f"unknown device kind {kind!r} (smoke, gas, leak, door)")


@dataclass
class SimDevice:
    kind: str
    device_id: str
    dev_addr: int | None = None  # ABP, or OTAA once joined
    nwk_skey: bytes | None = None
    app_skey: bytes | None = None
    dev_eui: bytes | None = None  # OTAA: on-air (little endian) order
    app_key: bytes | None = None
    app_eui: bytes = bytes(8)
    fcnt_up: int = 0  # next uplink counter (32 bit; 16 bits on air)
    fcnt_down: int = -1
    rssi_dbm: int = -95
    snr_db: float = 6.5
    dev_nonces: list[int] = field(default_factory=list)
    acks: int = 0
    last_phy: bytes = b""
    history: list[bytes] = field(default_factory=list)  # the last uplinks sent, oldest first (for replays)
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def abp(cls, kind: str, dev_addr: int, nwk_skey: bytes, app_skey: bytes, device_id: str = "") -> "SimDevice":
        return cls(kind, device_id or f"{dev_addr:08x}", dev_addr, nwk_skey, app_skey)

    @classmethod
    def otaa(cls, kind: str, dev_eui_hex: str, app_key: bytes, device_id: str = "") -> "SimDevice":
        return cls(kind, device_id or dev_eui_hex.lower(), dev_eui=bytes.fromhex(dev_eui_hex)[::-1], app_key=app_key)

    @property
    def joined(self) -> bool:
        return self.nwk_skey is not None

    def report(self, reason: str = "heartbeat", confirmed: bool = False) -> bytes:
        return self.uplink(payload(self.kind, reason), FPORT_MILESIGHT, confirmed)

    def uplink(self, data: bytes, fport: int | None = FPORT_MILESIGHT, confirmed: bool = False, fopts: bytes = b"",
               fctrl: int = 0) -> bytes:
        if not self.joined or self.dev_addr is None or self.app_skey is None or self.nwk_skey is None:
            raise RuntimeError(f"{self.device_id} has not joined")
        mtype = mac.MType.CONFIRMED_UP if confirmed else mac.MType.UNCONFIRMED_UP
        phy = mac.build_data(mtype, self.dev_addr, self.fcnt_up, self.nwk_skey, self.app_skey, fctrl, fopts, fport, data)
        self.fcnt_up += 1
        self.last_phy = phy
        self.history = [*self.history[-7:], phy]
        return phy

    def join_request(self, reuse_nonce: bool = False) -> bytes:
        assert self.dev_eui is not None and self.app_key is not None, "not an OTAA device"
        if reuse_nonce and self.dev_nonces:
            nonce = self.dev_nonces[-1]
        else:
            nonce = self.rng.randrange(65536)
            while nonce in self.dev_nonces:
                nonce = self.rng.randrange(65536)
            self.dev_nonces.append(nonce)
        self.last_phy = mac.build_join_request(self.app_key, self.app_eui, self.dev_eui, nonce)
        return self.last_phy

    def on_downlink(self, phy: bytes) -> bool:
        """A downlink heard in RX1: a JoinAccept (OTAA, derives the session) or a data frame for us. True if ours."""
        from drivers.lorawan import crypto

        if phy[:1] == bytes([mac.MType.JOIN_ACCEPT << 5]) and self.app_key is not None:
            try:
                ja = mac.open_join_accept(self.app_key, phy)
            except Exception:  # noqa: BLE001 - another device's JoinAccept: not decryptable with our key
                return False
            nonce = self.dev_nonces[-1].to_bytes(2, "little")
            self.nwk_skey, self.app_skey = crypto.session_keys(self.app_key, ja.app_nonce, ja.net_id, nonce)
            self.dev_addr, self.fcnt_up, self.fcnt_down = ja.dev_addr, 0, -1
            return True
        try:
            frame = mac.parse_data(phy)
        except Exception:  # noqa: BLE001
            return False
        if frame.dev_addr != self.dev_addr or self.nwk_skey is None:
            return False
        fcnt = (self.fcnt_down + 1 & ~0xFFFF) | frame.fcnt16
        if not mac.verify_data_mic(frame, self.nwk_skey, fcnt, crypto.DOWNLINK):
            return False
        self.fcnt_down = fcnt
        if frame.fctrl & mac.ACK:
            self.acks += 1
        return True
