"""The embedded LoRaWAN 1.0.x class A network server, sans-IO: one received packet (rxpk) in, one
verdict out (decrypted payload to decode, a JoinAccept or ACK to send, a duplicate, or a counted
rejection). Sessions, counters and DevNonces live here, persisted through drivers/counters.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from drivers.lorawan import crypto, mac
from drivers.lorawan.config import LorawanPort, activation
from drivers.lorawan.gwmp import RxPk, TxPk
from drivers.lorawan.region import JOIN_ACCEPT_DELAY1_US, RX2_EXTRA_US, Region
from drivers.counters import CounterStore
from drivers.lorawan.session import DeviceRecord, Session, fcnt_candidates
from drivers.sequence import Check, SequenceGuard
from drivers.sequence import Verdict as Seq
from gateway.errors import ConfigError, FrameError


MAX_DEDUP_ENTRIES = 4096  # frames remembered for de-duplication at most (a flood cannot grow memory)


@dataclass(frozen=True)
class Provisioned:
    """A configured device and its keys (from the credentials file)."""

    device_id: str
    dev_eui: bytes | None = None  # OTAA, on-air (little endian) order
    app_key: bytes | None = None
    dev_addr: int | None = None  # ABP
    nwk_skey: bytes | None = None
    app_skey: bytes | None = None

    @property
    def otaa(self) -> bool:
        return self.dev_eui is not None


def provision(device_id: str, address: str, secret: str | None) -> Provisioned:
    """A configured device with its keys from the credentials file's lora_keys: OTAA when the address is a
    DevEUI (the secret is the AppKey), ABP when it is a DevAddr (the secret is "NwkSKey:AppSKey")."""
    if secret is None:
        raise ConfigError([f"the credentials file has no lora_keys.{device_id}"])
    keys = crypto.parse_keys(device_id, secret)
    if activation(address) == "otaa":
        if len(keys) != 1:
            raise ConfigError([f"lora_keys.{device_id}: an OTAA device (DevEUI address) needs its AppKey only"])
        return Provisioned(device_id, dev_eui=bytes.fromhex(address)[::-1], app_key=keys[0])
    if len(keys) != 2:
        raise ConfigError([f"lora_keys.{device_id}: an ABP device (DevAddr address) needs NwkSKey:AppSKey"])
    return Provisioned(device_id, dev_addr=int(address, 16), nwk_skey=keys[0], app_skey=keys[1])


@dataclass
class Verdict:
    kind: str  # "data" | "join" | "duplicate" | "rejected"
    reason: str = ""  # rejected: why; data: "" or "replay_suspect"
    device_id: str = ""
    fcnt: int = -1
    last_fcnt: int = -1
    fport: int | None = None
    payload: bytes = b""  # decrypted FRMPayload (application data)
    downlink: TxPk | None = None
    durable: bool = False  # persist (join, downlink-counter block) before the downlink is sent
    security: str = ""  # a security Event code of a rejected frame: devnonce_reused
    check: Check | None = None  # the replay verdict of a data frame (drivers/sequence.py)
    seq_key: str = ""  # its key in the SequenceGuard (device:DevAddr)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def replay_suspect(self) -> bool:
        return self.reason == "replay_suspect"


class NetworkServer:
    def __init__(self, cfg: LorawanPort, region: Region, devices: list[Provisioned], store: CounterStore,
                 rng: random.Random | None = None) -> None:
        self.cfg, self.region, self.rng, self.store = cfg, region, rng or random.SystemRandom(), store
        # The replay rule every protocol shares (issue 15): above the mark accepted however far ahead, the
        # same frame again a duplicate (a retransmission), anything else below a suspect; a device reset
        # re-syncs after a run of increasing frames. Keyed by device and DevAddr: a new session starts afresh.
        self.guard = SequenceGuard(store, "lorawan", reorder_window=0, resync_frames=cfg.resync_frames,
                                   resync_min_s=cfg.resync_min_s)
        self.devices = {d.device_id: d for d in devices}
        self.by_eui = {d.dev_eui: d for d in devices if d.dev_eui is not None}
        self.records = {d.device_id: DeviceRecord(d.device_id, "otaa" if d.otaa else "abp") for d in devices}
        self.sessions: dict[str, Session] = {}
        self.previous: dict[str, Session] = {}  # OTAA: the session before the last join, until the new one is used
        self.nonces: dict[str, set[int]] = {d.device_id: set() for d in devices if d.otaa}
        self._by_addr: dict[int, list[Session]] = {}
        self._seen: dict[bytes, float] = {}  # PHYPayload -> first heard (monotonic s), for de-duplication
        self._dev_status_due: dict[str, float] = {}
        for d in devices:
            if not d.otaa:
                assert d.dev_addr is not None and d.nwk_skey and d.app_skey
                self.sessions[d.device_id] = Session(d.device_id, d.dev_addr, d.nwk_skey, d.app_skey, otaa=False)
        self._load()
        self._index()

    # -- persistence (drivers/counters.py: one JSON file per port in the state directory) -----------

    def _load(self) -> None:
        """Sessions and used DevNonces of a previous run. ABP keys always come from the credentials file
        (a changed key wins over the saved one); only its downlink counter is taken from the state."""
        for dev_id, dev in self.devices.items():
            obj = self.store.get(f"session:{dev_id}")
            try:
                s = Session.from_json(obj) if obj else None
            except (KeyError, ValueError, TypeError):
                s = None  # a damaged record: an OTAA device joins again, an ABP device keeps its keys
            if s is not None and dev.otaa and s.otaa:
                self.sessions[dev_id] = s
            elif s is not None and not dev.otaa and not s.otaa and s.dev_addr == dev.dev_addr and s.nwk_skey == dev.nwk_skey:
                self.sessions[dev_id].fcnt_down = self.sessions[dev_id].fcnt_down_reserved = s.fcnt_down
            nonces = (self.store.get(f"nonces:{dev_id}") or {}).get("used")
            if dev.otaa and isinstance(nonces, list):
                self.nonces[dev_id] = {int(n) & 0xFFFF for n in nonces if isinstance(n, int)}

    def _save(self, s: Session, urgent: bool) -> None:
        self.store.put(f"session:{s.device_id}", s.to_json(), urgent)

    def key(self, s: Session) -> str:
        return f"{s.device_id}:{s.dev_addr:08x}"

    def last_fcnt(self, device_id: str) -> int | None:
        s = self.sessions.get(device_id)
        return self.guard.last(self.key(s)) if s else None

    def _index(self) -> None:
        self._by_addr = {}
        for s in [*self.sessions.values(), *self.previous.values()]:
            self._by_addr.setdefault(s.dev_addr, []).append(s)

    # -- uplink --------------------------------------------------------------------------------

    def uplink(self, rx: RxPk, now_mono: float, wall_s: float) -> Verdict:
        """Never raises: every failure is a Verdict("rejected", reason) counted by the caller."""
        if self._duplicate(rx.data, now_mono):
            return Verdict("duplicate")
        try:
            mtype = mac.mtype_of(rx.data)
            if mtype is mac.MType.JOIN_REQUEST:
                return self._join(rx, wall_s)
            if mtype in (mac.MType.UNCONFIRMED_UP, mac.MType.CONFIRMED_UP):
                return self._data(rx, wall_s, now_mono)
            return Verdict("rejected", f"unexpected_{mtype.name.lower()}")
        except FrameError as exc:
            return Verdict("rejected", exc.reason)

    def _duplicate(self, phy: bytes, now: float) -> bool:
        """The same bytes within the window: another chain or path heard the same transmission. A device
        never sends identical bytes twice (its counter moves), so later copies are replays for the FCnt check."""
        seen = self._seen  # insertion-ordered: the oldest first, so expiry pops from the front (O(1) per frame)
        while seen:
            oldest = next(iter(seen))
            if now - seen[oldest] <= self.cfg.dedup_window_s and len(seen) < MAX_DEDUP_ENTRIES:
                break
            del seen[oldest]
        first = self._seen.get(phy)
        if first is not None and now - first <= self.cfg.dedup_window_s:
            return True
        self._seen[phy] = now
        return False

    def _data(self, rx: RxPk, wall_s: float, now_mono: float) -> Verdict:
        frame = mac.parse_data(rx.data)
        sessions = self._by_addr.get(frame.dev_addr)
        if not sessions:
            return Verdict("rejected", "unknown_devaddr")  # another network's device: common, not a fault
        for s in sessions:
            key = self.key(s)
            last = self.guard.last(key)
            ahead, behind = fcnt_candidates(-1 if last is None else last, frame.fcnt16, self.cfg.fcnt_epochs_ahead)
            fcnt = next((c for c in (*ahead, *behind) if mac.verify_data_mic(frame, s.nwk_skey, c)), None)
            if fcnt is None:
                continue
            check = self.guard.check(key, fcnt, frame.mic.hex(), now_mono)
            verdict = self._classified(s, frame, fcnt, last, check, rx, wall_s, now_mono)
            verdict.seq_key = key
            return verdict
        self.records[sessions[0].device_id].reject("mic")
        return Verdict("rejected", "mic", sessions[0].device_id)

    def _classified(self, s: Session, frame: mac.DataFrame, fcnt: int, last: int | None, check: Check, rx: RxPk,
                    wall_s: float, now_mono: float) -> Verdict:
        rec = self.records[s.device_id]
        rec.last_rssi_dbm, rec.last_snr_db, rec.last_seen_wall_s = rx.rssi_dbm, rx.lsnr_db, wall_s
        if check.verdict is Seq.DUPLICATE:
            return self._retransmission(s, frame, rx, check)
        payload = self._plain(s, frame, fcnt) if frame.fport is not None else b""
        if check.verdict is Seq.SUSPECT:
            # No ACK, no MAC answers, no counter move: a replay changes nothing a later genuine frame needs.
            rec.replay_suspects += 1
            return Verdict("data", "replay_suspect", s.device_id, fcnt, -1 if last is None else last,
                           frame.fport or None, payload if frame.fport else b"", check=check)
        return self._accept(s, frame, fcnt, payload, rx, check, wall_s, now_mono)

    def _plain(self, s: Session, frame: mac.DataFrame, fcnt: int) -> bytes:
        key = s.nwk_skey if frame.fport == 0 else s.app_skey
        return crypto.payload_cipher(key, s.dev_addr, fcnt, crypto.UPLINK, frame.frm_payload)

    def _retransmission(self, s: Session, frame: mac.DataFrame, rx: RxPk, check: Check) -> Verdict:
        """LoRaWAN 1.0.2 §18.4: a device that missed the ACK of a confirmed uplink sends the same frame again,
        same FCnt (the guard's DUPLICATE: same counter, same MIC). Acknowledge it again, deliver nothing twice."""
        self.records[s.device_id].retransmissions += 1
        verdict = Verdict("data", "retransmission", s.device_id, check.last or 0, check.last or 0, check=check)
        if frame.confirmed:
            verdict.downlink, verdict.durable = self._downlink(s, rx, b"", ack=True)
        return verdict

    def _accept(self, s: Session, frame: mac.DataFrame, fcnt: int, payload: bytes, rx: RxPk, check: Check,
                wall_s: float, now_mono: float) -> Verdict:
        if s.otaa and not s.confirmed:
            self._confirm(s)
        rec = self.records[s.device_id]
        rec.frames += 1
        commands = mac.parse_uplink_commands(payload if frame.fport == 0 else frame.fopts)
        answers = b""
        for cid, body in commands:
            if cid is mac.Cid.LINK_CHECK:
                floor = mac.SNR_FLOOR_DB.get(rx.datr.split("BW")[0], -20.0)
                answers += mac.link_check_ans(round((rx.lsnr_db or 0.0) - floor), 1)
            elif cid is mac.Cid.DEV_STATUS and len(body) == 2:
                rec.battery, rec.margin_db = mac.parse_dev_status_ans(body)
                rec.dev_status_wall_s = wall_s
        # ADRACKReq: any downlink resets the device's ADR_ACK_CNT (§4.3.1.1); ADR itself is off.
        need = frame.confirmed or bool(answers) or bool(frame.fctrl & mac.ADR_ACK_REQ)
        if need and now_mono >= self._dev_status_due.get(s.device_id, 0.0):
            answers += mac.dev_status_req()  # piggy-backed: never a downlink of its own (one radio, half duplex)
            self._dev_status_due[s.device_id] = now_mono + self.cfg.dev_status_interval_s
        verdict = Verdict("data", "", s.device_id, fcnt, -1 if check.last is None else check.last,
                          frame.fport or None, payload if frame.fport else b"", check=check)
        if need:
            verdict.downlink, verdict.durable = self._downlink(s, rx, answers[:15], ack=frame.confirmed)
        return verdict

    def _confirm(self, s: Session) -> None:
        """The first uplink on a new OTAA session: the device has the JoinAccept; forget the old session."""
        s.confirmed = True
        old = self.previous.pop(s.device_id, None)
        if old is not None:  # its replay mark is of no further use: keep the state file from growing with rejoins
            self.store.records.pop(f"lorawan:{self.key(old)}", None)
        self._index()
        self._save(s, urgent=True)

    def _downlink(self, s: Session, rx: RxPk, fopts: bytes, ack: bool) -> tuple[TxPk, bool]:
        fcnt, durable = s.next_fcnt_down()
        if durable:
            self._save(s, urgent=True)  # the new block's floor, written before the frame goes out
        phy = mac.build_data(mac.MType.UNCONFIRMED_DOWN, s.dev_addr, fcnt, s.nwk_skey, s.app_skey,
                             fctrl=mac.ACK if ack else 0, fopts=fopts)
        return self._rx1(phy, rx, s.rx_delay_s * 1_000_000, s.rx1_dr_offset), durable

    def _rx1(self, phy: bytes, rx: RxPk, delay_us: int, dr_offset: int) -> TxPk:
        """The downlink in RX1, with its RX2 twin one second later on the region's RX2 channel and rate
        (LoRaWAN 1.0.2 §3.3.2): the driver sends the twin if the forwarder says RX1 is too late."""
        dr = self.region.rx1_dr(self.region.dr_of(rx.datr), dr_offset)
        power = self.region.downlink_power_dbm
        rx2 = TxPk(phy, (rx.tmst + delay_us + RX2_EXTRA_US) & 0xFFFFFFFF, self.region.rx2_freq_mhz,
                   self.region.data_rates[self.region.rx2_dr], power)
        return TxPk(phy, (rx.tmst + delay_us) & 0xFFFFFFFF, self.region.rx1_freq_mhz(rx.freq_mhz, rx.chan),
                    self.region.data_rates[dr], power, fallback=rx2)

    # -- join ----------------------------------------------------------------------------------

    def _join(self, rx: RxPk, wall_s: float) -> Verdict:
        req = mac.parse_join_request(rx.data)
        dev = self.by_eui.get(req.dev_eui)
        if dev is None or dev.app_key is None:
            return Verdict("rejected", "unknown_deveui", detail={"dev_eui": req.dev_eui_hex})
        rec = self.records[dev.device_id]
        if crypto.join_mic(dev.app_key, req.signed) != req.mic:
            rec.reject("join_mic")
            return Verdict("rejected", "join_mic", dev.device_id)
        used = self.nonces[dev.device_id]
        if req.dev_nonce in used:
            # §6.2.4: the server keeps the DevNonces used and ignores a JoinRequest that reuses one (a replay
            # of a recorded join would otherwise reset the session and deafen the device).
            rec.reject("devnonce_reused")
            return Verdict("rejected", "devnonce_reused", dev.device_id, security="devnonce_reused",
                           detail={"dev_nonce": req.dev_nonce})
        self.region.dr_of(rx.datr)  # a join on a rate this region does not have cannot be answered
        used.add(req.dev_nonce)
        self.store.put(f"nonces:{dev.device_id}", {"used": sorted(used)}, urgent=True)
        app_nonce = self.rng.getrandbits(24).to_bytes(3, "little")
        net_id = self.cfg.net_id.to_bytes(3, "little")
        nwk_skey, app_skey = crypto.session_keys(dev.app_key, app_nonce, net_id, req.dev_nonce.to_bytes(2, "little"))
        new = Session(dev.device_id, self._new_dev_addr(), nwk_skey, app_skey, otaa=True, rx1_dr_offset=self.cfg.rx1_dr_offset,
                      rx_delay_s=self.cfg.rx1_delay_s, joined_wall_s=wall_s, confirmed=False)
        old = self.sessions.get(dev.device_id)
        if old is not None and old.confirmed:
            self.previous[dev.device_id] = old  # until the device shows it got this JoinAccept
        self.sessions[dev.device_id] = new
        self._index()
        self._save(new, urgent=True)
        self._dev_status_due.pop(dev.device_id, None)
        rec.joins += 1
        ja = mac.JoinAccept(app_nonce, net_id, new.dev_addr, self.cfg.rx1_dr_offset, self.region.rx2_dr,
                            self.cfg.rx1_delay_s, self.region.cflist())
        phy = mac.build_join_accept(dev.app_key, ja)
        down = self._rx1(phy, rx, JOIN_ACCEPT_DELAY1_US, 0)  # §6.2.5: RX1 of a JoinAccept uses offset 0
        return Verdict("join", "", dev.device_id, downlink=down, durable=True,
                       detail={"dev_addr": f"{new.dev_addr:08x}", "dev_nonce": req.dev_nonce})

    def _new_dev_addr(self) -> int:
        # §6.1.1: DevAddr = NwkID (7 LSBs of the NetID) in the top 7 bits | a 25-bit NwkAddr we choose.
        taken = {s.dev_addr for s in [*self.sessions.values(), *self.previous.values()]}
        while True:
            addr = ((self.cfg.net_id & 0x7F) << 25) | self.rng.getrandbits(25)
            if addr not in taken:
                return addr
