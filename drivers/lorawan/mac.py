"""LoRaWAN 1.0.x MAC layer frames, sans-IO: PHYPayload parsing and building for data frames,
JoinRequest and JoinAccept, and the MAC commands a class A device needs to join and stay joined.

Layout (LoRaWAN 1.0.2 §4): PHYPayload = MHDR | MACPayload | MIC; MHDR MType in bits 7..5, Major 1..0 = 0;
FHDR = DevAddr(4 LE) | FCtrl | FCnt(2 LE) | FOpts(0..15); FPort present iff payload present.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.lorawan import crypto
from gateway.errors import FrameError

MIC_BYTES = 4


class MType(enum.IntEnum):
    JOIN_REQUEST = 0
    JOIN_ACCEPT = 1
    UNCONFIRMED_UP = 2
    UNCONFIRMED_DOWN = 3
    CONFIRMED_UP = 4
    CONFIRMED_DOWN = 5
    RFU = 6
    PROPRIETARY = 7


# FCtrl bits (§4.3.1): uplink ADR b7, ADRACKReq b6, ACK b5, ClassB/RFU b4, FOptsLen b3..0.
ADR, ADR_ACK_REQ, ACK = 0x80, 0x40, 0x20


@dataclass(frozen=True)
class DataFrame:
    mtype: MType
    dev_addr: int
    fctrl: int
    fcnt16: int
    fopts: bytes
    fport: int | None
    frm_payload: bytes  # still encrypted
    mic: bytes
    signed: bytes  # MHDR .. FRMPayload: what the MIC covers

    @property
    def confirmed(self) -> bool:
        return self.mtype is MType.CONFIRMED_UP


@dataclass(frozen=True)
class JoinRequest:
    app_eui: bytes  # as on air (little endian)
    dev_eui: bytes
    dev_nonce: int
    mic: bytes
    signed: bytes

    @property
    def dev_eui_hex(self) -> str:
        return self.dev_eui[::-1].hex()  # printed big endian, as on the device label


def mtype_of(phy: bytes) -> MType:
    if not phy:
        raise FrameError("empty_phy")
    if phy[0] & 0x03 != 0:
        raise FrameError("major_not_lorawan_r1", phy)  # §4.2.2: Major 00 only
    return MType(phy[0] >> 5)


def source_of(phy: bytes) -> tuple[str, str]:
    """(kind, source) of any PHYPayload for the lora_listen tap, never raising: a data frame's DevAddr
    (big-endian hex, as network servers print it), a JoinRequest's DevEUI (as on the label), or ("", "")."""
    if not phy or phy[0] & 0x03:
        return "", ""
    mtype = MType(phy[0] >> 5)
    kind = mtype.name.lower()
    if mtype is MType.JOIN_REQUEST and len(phy) >= 17:
        return "join", phy[9:17][::-1].hex()
    if mtype in (MType.UNCONFIRMED_UP, MType.CONFIRMED_UP) and len(phy) >= 5:
        return kind, f"{int.from_bytes(phy[1:5], 'little'):08x}"
    return kind, ""


def parse_data(phy: bytes) -> DataFrame:
    mtype = mtype_of(phy)
    if mtype not in (MType.UNCONFIRMED_UP, MType.CONFIRMED_UP, MType.UNCONFIRMED_DOWN, MType.CONFIRMED_DOWN):
        raise FrameError(f"not_a_data_frame_{mtype.name.lower()}", phy)
    if len(phy) < 1 + 7 + MIC_BYTES:
        raise FrameError("short_data_frame", phy)
    fctrl = phy[5]
    fopts_len = fctrl & 0x0F
    body_end = len(phy) - MIC_BYTES
    opts_end = 8 + fopts_len
    if opts_end > body_end:
        raise FrameError("fopts_beyond_frame", phy)
    fport = phy[opts_end] if opts_end < body_end else None
    payload = phy[opts_end + 1:body_end] if fport is not None else b""
    if fport == 0 and fopts_len:
        raise FrameError("fopts_with_fport_0", phy)  # §4.3.1.6: MAC commands in FOpts and FRMPayload at once
    return DataFrame(mtype, int.from_bytes(phy[1:5], "little"), fctrl, int.from_bytes(phy[6:8], "little"),
                     phy[8:opts_end], fport, payload, phy[body_end:], phy[:body_end])


def verify_data_mic(frame: DataFrame, nwk_skey: bytes, fcnt32: int, direction: int = crypto.UPLINK) -> bool:
    return crypto.lorawan_mic(nwk_skey, frame.dev_addr, fcnt32, direction, frame.signed) == frame.mic


def build_data(mtype: MType, dev_addr: int, fcnt32: int, nwk_skey: bytes, app_skey: bytes, fctrl: int = 0,
               fopts: bytes = b"", fport: int | None = None, payload: bytes = b"") -> bytes:
    """Encrypt and sign a data frame (the server's downlinks, the simulator's uplinks)."""
    if len(fopts) > 15:
        raise ValueError("FOpts is at most 15 bytes")
    direction = crypto.DOWNLINK if mtype in (MType.UNCONFIRMED_DOWN, MType.CONFIRMED_DOWN) else crypto.UPLINK
    msg = bytes([mtype << 5]) + dev_addr.to_bytes(4, "little") + bytes([(fctrl & 0xF0) | len(fopts)]) + \
        (fcnt32 & 0xFFFF).to_bytes(2, "little") + fopts
    if fport is not None:
        key = nwk_skey if fport == 0 else app_skey
        msg += bytes([fport]) + crypto.payload_cipher(key, dev_addr, fcnt32, direction, payload)
    return msg + crypto.lorawan_mic(nwk_skey, dev_addr, fcnt32, direction, msg)


def parse_join_request(phy: bytes) -> JoinRequest:
    if mtype_of(phy) is not MType.JOIN_REQUEST or len(phy) != 23:
        raise FrameError("bad_join_request", phy)  # §6.2.4: MHDR + AppEUI 8 + DevEUI 8 + DevNonce 2 + MIC 4
    return JoinRequest(phy[1:9], phy[9:17], int.from_bytes(phy[17:19], "little"), phy[19:], phy[:19])


def build_join_request(app_key: bytes, app_eui: bytes, dev_eui: bytes, dev_nonce: int) -> bytes:
    msg = bytes([MType.JOIN_REQUEST << 5]) + app_eui + dev_eui + dev_nonce.to_bytes(2, "little")
    return msg + crypto.join_mic(app_key, msg)


@dataclass(frozen=True)
class JoinAccept:
    app_nonce: bytes  # 3 bytes, on-air order
    net_id: bytes  # 3 bytes, on-air order
    dev_addr: int
    rx1_dr_offset: int
    rx2_dr: int
    rx_delay_s: int
    cflist: bytes = b""

    def body(self) -> bytes:
        dl = ((self.rx1_dr_offset & 0x07) << 4) | (self.rx2_dr & 0x0F)
        return self.app_nonce + self.net_id + self.dev_addr.to_bytes(4, "little") + bytes([dl, self.rx_delay_s & 0x0F]) + self.cflist


def build_join_accept(app_key: bytes, ja: JoinAccept) -> bytes:
    """§6.2.5: MIC over MHDR | body with the AppKey, then body | MIC encrypted (ECB decrypt) with the AppKey."""
    plain = bytes([MType.JOIN_ACCEPT << 5]) + ja.body()
    return crypto.encrypt_join_accept(app_key, plain + crypto.join_mic(app_key, plain))


def open_join_accept(app_key: bytes, phy: bytes) -> JoinAccept:
    """The device side: decrypt, verify the MIC, parse. FrameError on a wrong key or length."""
    if len(phy) not in (17, 33) or mtype_of(phy) is not MType.JOIN_ACCEPT:
        raise FrameError("bad_join_accept", phy)
    plain = crypto.decrypt_join_accept(app_key, phy)
    if crypto.join_mic(app_key, plain[:-4]) != plain[-4:]:
        raise FrameError("join_accept_mic", phy)
    b = plain[1:-4]
    return JoinAccept(b[0:3], b[3:6], int.from_bytes(b[6:10], "little"), (b[10] >> 4) & 0x07, b[10] & 0x0F,
                      b[11] & 0x0F, b[12:])


# -- MAC commands (§5) ------------------------------------------------------------------------------

class Cid(enum.IntEnum):
    LINK_CHECK = 0x02
    LINK_ADR = 0x03
    DUTY_CYCLE = 0x04
    RX_PARAM_SETUP = 0x05
    DEV_STATUS = 0x06
    NEW_CHANNEL = 0x07
    RX_TIMING_SETUP = 0x08
    TX_PARAM_SETUP = 0x09
    DL_CHANNEL = 0x0A
    DEVICE_TIME = 0x0D


# Payload length of each command in the uplink direction (the device's Req or Ans), §5 table 4 and 1.0.3 §5.9.
UPLINK_CMD_BYTES = {Cid.LINK_CHECK: 0, Cid.LINK_ADR: 1, Cid.DUTY_CYCLE: 0, Cid.RX_PARAM_SETUP: 1, Cid.DEV_STATUS: 2,
                    Cid.NEW_CHANNEL: 1, Cid.RX_TIMING_SETUP: 0, Cid.TX_PARAM_SETUP: 0, Cid.DL_CHANNEL: 1, Cid.DEVICE_TIME: 0}


def parse_uplink_commands(data: bytes) -> list[tuple[Cid, bytes]]:
    """FOpts or an FPort 0 payload -> [(cid, payload)]. An unknown CID ends the parse (§5: its length is
    unknown, the rest cannot be framed); what was parsed before it is kept."""
    out, i = [], 0
    while i < len(data):
        try:
            cid = Cid(data[i])
        except ValueError:
            break
        n = UPLINK_CMD_BYTES[cid]
        if i + 1 + n > len(data):
            break
        out.append((cid, data[i + 1:i + 1 + n]))
        i += 1 + n
    return out


def link_check_ans(margin_db: int, gw_count: int) -> bytes:
    # §5.1: Margin 0..254 dB above the demodulation floor of the uplink's data rate, GwCnt gateways heard it.
    return bytes([Cid.LINK_CHECK, max(0, min(254, margin_db)), max(0, min(255, gw_count))])


def dev_status_req() -> bytes:
    return bytes([Cid.DEV_STATUS])


def parse_dev_status_ans(payload: bytes) -> tuple[int | None, int]:
    """§5.5: Battery 0 external power, 1..254 level, 255 unknown -> None; Margin 6-bit signed SNR (dB)."""
    battery = payload[0]
    margin = payload[1] & 0x3F
    return (None if battery == 255 else battery), (margin - 64 if margin >= 32 else margin)


# Demodulation floor SNR per spreading factor (SX1276/SX1302 datasheets: SF7 -7.5 dB .. SF12 -20 dB), for LinkCheckAns.
SNR_FLOOR_DB = {"SF7": -7.5, "SF8": -10.0, "SF9": -12.5, "SF10": -15.0, "SF11": -17.5, "SF12": -20.0}
