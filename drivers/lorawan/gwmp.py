"""Semtech UDP packet-forwarder protocol (GWMP, protocol version 2), sans-IO: datagram bytes in,
typed packets or a FrameError out, and the encoders both the driver and the simulator use.

Reference: Lora-net/sx1302_hal packet_forwarder/PROTOCOL.md (v2); v1 forwarders (Lora-net/packet_forwarder
PROTOCOL.TXT) send version 1 and no TX_ACK, and are accepted the same way.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.errors import FrameError

VERSIONS = (1, 2)
HEADER_BYTES = 4  # version | token (2) | identifier
EUI_BYTES = 8
MAX_DATAGRAM_BYTES = 65507  # a UDP payload cannot be larger; the forwarder's own buffer is 4096 bytes
MAX_PHY_BYTES = 255
# Why an rxpk entry was skipped, as counted (reject_rxpk_<reason>): a closed vocabulary, so a hostile
# datagram cannot mint counter names (they reach health, the retained status and the panel).
RXPK_REASONS = frozenset({"not_an_object", "crc_failed", "crc_absent", "not_lora", "data_not_string", "data_not_base64",
                          "bad_size", "size_mismatch", "tmst_not_a_number", "freq_not_a_number"})
_DECODER = msgspec.json.Decoder()  # a LoRa packet carries at most 255 bytes (SX1302 datasheet)


class Ident(enum.IntEnum):
    PUSH_DATA = 0x00  # gw -> srv: EUI + JSON {"rxpk": [...], "stat": {...}}
    PUSH_ACK = 0x01  # srv -> gw: same token
    PULL_DATA = 0x02  # gw -> srv: EUI, keepalive; opens the downlink path through NAT
    PULL_RESP = 0x03  # srv -> gw: JSON {"txpk": {...}}, to the address the PULL_DATA came from
    PULL_ACK = 0x04  # srv -> gw: same token as the PULL_DATA
    TX_ACK = 0x05  # gw -> srv: same token as the PULL_RESP, EUI, optional {"txpk_ack": {"error": ...}}


@dataclass(frozen=True)
class RxPk:
    """One received radio packet as the forwarder reports it (only the fields the server uses)."""

    data: bytes  # the PHYPayload
    tmst: int  # concentrator counter (µs) at the end of reception; wraps every ~71.6 min
    freq_mhz: float
    datr: str  # "SF7BW125" (LoRa); FSK packets are counted and skipped
    chan: int = 0
    rfch: int = 0
    rssi_dbm: int | None = None
    lsnr_db: float | None = None
    codr: str = "4/5"


@dataclass(frozen=True)
class Packet:
    version: int
    token: int
    ident: Ident
    eui: bytes = b""  # gateway EUI (PUSH_DATA, PULL_DATA, TX_ACK)
    rxpk: tuple[RxPk, ...] = ()
    stat: dict[str, Any] | None = None
    txpk: dict[str, Any] | None = None  # PULL_RESP
    tx_error: str = ""  # TX_ACK: "" or NONE means sent; else TOO_LATE, COLLISION_PACKET ...
    rejected: tuple[str, ...] = ()  # reasons for rxpk entries skipped (bad CRC, bad base64 ...)


def _json(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        # Strict JSON: NaN/Infinity and /* comments */ are refused (the spec's JSON has none; float('nan')
        # would poison comparisons). msgspec bounds nesting depth, so a hostile datagram cannot recurse deep.
        obj = _DECODER.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise FrameError("bad_json", body, str(exc)) from None
    if not isinstance(obj, dict):
        raise FrameError("bad_json", body, "not an object")
    return obj


def b64decode(text: Any) -> bytes:
    """The spec says padded base64; some forwarders leave the padding out: accept both."""
    if not isinstance(text, str):
        raise ValueError("data_not_string")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("data_not_base64") from None


def _num(obj: dict[str, Any], key: str, kind: type = float) -> Any:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not math.isfinite(v)):
        raise ValueError(f"{key}_not_a_number")  # key: one of this module's literals, never the datagram's
    return kind(v)


def _rxpk(obj: Any) -> RxPk:
    if not isinstance(obj, dict):
        raise ValueError("not_an_object")
    stat = obj.get("stat", 1)
    if stat != 1:  # -1 CRC failed, 0 no CRC: the forwarder forwards these only when configured to
        raise ValueError(f"crc_{'failed' if stat == -1 else 'absent'}")
    if obj.get("modu", "LORA") != "LORA" or not isinstance(obj.get("datr"), str):
        raise ValueError("not_lora")
    data = b64decode(obj.get("data"))
    if not data or len(data) > MAX_PHY_BYTES:
        raise ValueError("bad_size")
    size = obj.get("size")
    if size is not None and size != len(data):
        raise ValueError("size_mismatch")
    rssi = _opt(obj, "rssi")
    return RxPk(data, _num(obj, "tmst", int) & 0xFFFFFFFF, _num(obj, "freq"), obj["datr"],
                int(_opt(obj, "chan") or 0), int(_opt(obj, "rfch") or 0), None if rssi is None else int(rssi),
                _opt(obj, "lsnr"), obj["codr"] if isinstance(obj.get("codr"), str) else "4/5")


def _opt(obj: dict[str, Any], key: str) -> float | None:
    """An optional finite number, else None (a forwarder bug must not poison RSSI statistics)."""
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > 1e9:
        return None
    return float(v)


def parse(datagram: bytes) -> Packet:
    """One datagram -> Packet, or FrameError(reason). Bad rxpk entries are skipped and named in `rejected`."""
    if len(datagram) < HEADER_BYTES:
        raise FrameError("short_datagram", datagram)
    version, token, raw_ident = datagram[0], int.from_bytes(datagram[1:3], "big"), datagram[3]
    if version not in VERSIONS:
        raise FrameError("bad_version", datagram, f"version {version}")
    try:
        ident = Ident(raw_ident)
    except ValueError:
        raise FrameError("unknown_ident", datagram, f"identifier {raw_ident:#04x}") from None
    if ident in (Ident.PUSH_ACK, Ident.PULL_ACK):
        return Packet(version, token, ident)
    if ident is Ident.PULL_RESP:
        body = _json(datagram[4:])
        txpk = body.get("txpk")
        if not isinstance(txpk, dict):
            raise FrameError("pull_resp_without_txpk", datagram)
        return Packet(version, token, ident, txpk=txpk)
    if len(datagram) < HEADER_BYTES + EUI_BYTES:
        raise FrameError("short_datagram", datagram)
    eui = bytes(datagram[4:12])
    body = _json(datagram[12:])
    if ident is Ident.PULL_DATA:
        return Packet(version, token, ident, eui)
    if ident is Ident.TX_ACK:
        ack = body.get("txpk_ack")
        error = ack.get("error", "") if isinstance(ack, dict) else ""
        return Packet(version, token, ident, eui, tx_error="" if error in ("", "NONE") or not isinstance(error, str) else error)
    packets, rejected = [], []
    raw_rx = body.get("rxpk", [])
    for entry in raw_rx if isinstance(raw_rx, list) else [raw_rx]:
        try:
            packets.append(_rxpk(entry))
        except (ValueError, TypeError, OverflowError) as exc:
            reason = str(exc)  # counted as reject_rxpk_<reason>: only this module's own words, never a message
            rejected.append(reason if isinstance(exc, ValueError) and reason in RXPK_REASONS else "bad_rxpk")
    stat = body.get("stat")
    return Packet(version, token, ident, eui, tuple(packets), stat if isinstance(stat, dict) else None, rejected=tuple(rejected))


# -- encoders (server side and the simulator's forwarder side) -------------------------------------

def ack(version: int, token: int, ident: Ident) -> bytes:
    return bytes([version]) + token.to_bytes(2, "big") + bytes([ident])


def pull_resp(version: int, token: int, txpk: dict[str, Any]) -> bytes:
    return ack(version, token, Ident.PULL_RESP) + json.dumps({"txpk": txpk}, separators=(",", ":")).encode()


def push_data(token: int, eui: bytes, rxpk: list[dict[str, Any]] | None = None, stat: dict[str, Any] | None = None, version: int = 2) -> bytes:
    body: dict[str, Any] = {}
    if rxpk:
        body["rxpk"] = rxpk
    if stat is not None:
        body["stat"] = stat
    return ack(version, token, Ident.PUSH_DATA) + eui + json.dumps(body, separators=(",", ":")).encode()


def pull_data(token: int, eui: bytes, version: int = 2) -> bytes:
    return ack(version, token, Ident.PULL_DATA) + eui


def tx_ack(token: int, eui: bytes, error: str = "") -> bytes:
    body = json.dumps({"txpk_ack": {"error": error or "NONE"}}, separators=(",", ":")).encode()
    return ack(2, token, Ident.TX_ACK) + eui + body


def rxpk_json(phy: bytes, tmst: int, freq_mhz: float, datr: str, chan: int = 0, rfch: int = 0,
              rssi_dbm: int = -80, lsnr_db: float = 7.5, codr: str = "4/5") -> dict[str, Any]:
    return {"tmst": tmst & 0xFFFFFFFF, "chan": chan, "rfch": rfch, "freq": freq_mhz, "stat": 1, "modu": "LORA",
            "datr": datr, "codr": codr, "rssi": rssi_dbm, "lsnr": lsnr_db, "size": len(phy),
            "data": base64.b64encode(phy).decode()}


@dataclass
class TxPk:
    """A class A downlink for PULL_RESP: sent at `tmst` (the concentrator counter) on freq/datr."""

    phy: bytes
    tmst: int
    freq_mhz: float
    datr: str
    powe_dbm: int
    codr: str = "4/5"
    rfch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    fallback: "TxPk | None" = None  # the same frame in RX2, sent if the forwarder answers TOO_LATE for this one

    def json(self) -> dict[str, Any]:
        # ipol true: downlinks use inverted polarity so devices do not hear each other (LoRaWAN 1.0.x §2.1).
        return {"imme": False, "tmst": self.tmst & 0xFFFFFFFF, "freq": self.freq_mhz, "rfch": self.rfch, "powe": self.powe_dbm,
                "modu": "LORA", "datr": self.datr, "codr": self.codr, "ipol": True, "size": len(self.phy),
                "ncrc": True, "data": base64.b64encode(self.phy).decode(), **self.extra}
