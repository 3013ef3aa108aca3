"""The LoRaWAN driver: owns the GWMP UDP socket the packet forwarder talks to, runs the embedded network
server on every rxpk, decodes application payloads with the profile's codec, sends JoinAccepts and ACKs
as PULL_RESP, persists sessions, and reports forwarder silence as the driver being down."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable
from typing import Any


from drivers.base import DriverContext, DriverHealth, DriverState, Emit, Heard, RadioObserver
from drivers.codecs import CodecMeta
from drivers.counters import CounterStore
from drivers.lorawan import gwmp, mac
from drivers.lorawan.bridge import Bridge
from drivers.lorawan.forwarders import Forwarders
from drivers.lorawan.netserver import NetworkServer, Verdict, provision
from drivers.lorawan.region import REGIONS
from drivers.sequence import Verdict as SeqVerdict
from drivers.sequence import screen, security_event
from drivers.tap import Tap
from gateway.errors import CodecError, ConfigError, FrameError
from gateway.model import Event, EventKind, Item, Stamp

TICK_S = 1.0  # forwarder liveness and state flush checks
VIA = "lorawan"
RCVBUF_BYTES = 1 << 20
BRIDGE_RETRY_S = 30.0
MAX_PENDING_RX2 = 64
RX2_RETRY_ERRORS = ("TOO_LATE", "COLLISION_PACKET")  # PROTOCOL.md TX_ACK errors that RX2 can still fix
TX_ACK_ERRORS = frozenset({"TOO_LATE", "TOO_EARLY", "COLLISION_PACKET", "COLLISION_BEACON", "TX_FREQ", "TX_POWER",
                           "GPS_UNLOCKED"})  # sx1302_hal PROTOCOL.md §6, txpk_ack.error


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, driver: "LorawanDriver") -> None:
        self.driver = driver

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.driver.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable on a PULL_RESP: counted
        self.driver._bump("udp_errors")


class LorawanDriver:
    """Driver for one [ports.X] driver = "lorawan_gwmp"."""

    name = "lorawan_gwmp"

    def __init__(self, ctx: DriverContext) -> None:
        from drivers.codecs.registry import CODECS

        self.ctx, self.cfg, self.clock, self.log = ctx, ctx.port, ctx.clock, ctx.log
        self.region = REGIONS[self.cfg.region]
        self.misconfigured: dict[str, str] = {}
        self.codecs: dict[str, Callable[[bytes, CodecMeta], list[Item]]] = {}
        problems, provisioned = [], []
        for dev in ctx.devices:
            prof = ctx.profiles[dev.profile]
            if prof.codec not in CODECS:
                problems.append(f"profiles/{dev.profile}.toml: lorawan.codec: {prof.codec!r} is not a registered codec")
                continue
            self.codecs[dev.id] = CODECS[prof.codec]
            try:
                provisioned.append(provision(dev.id, str(dev.address), ctx.secrets.get(dev.id)))
            except ConfigError as exc:
                # One device without its keys must not silence the others: it is named in health().
                self.misconfigured[dev.id] = "; ".join(exc.problems)
                self.log.error("lorawan_keys_invalid", device_id=dev.id, problem=exc.problems[0])
        if problems:
            raise ConfigError(problems)
        # Sessions, counters and used DevNonces survive a restart (drivers/counters.py): no trust on first use.
        self.store = CounterStore(ctx.state_dir, ctx.port_name, self.log, flush_interval_s=self.cfg.state_flush_s)
        self.ns = NetworkServer(self.cfg, self.region, provisioned, self.store)
        self.forwarders = Forwarders(self.cfg.forwarder_timeout_s, self.clock.monotonic(), self.cfg.gateway_euis)
        self.counters: dict[str, int] = {"datagrams": 0, "uplinks": 0, "joins": 0, "duplicate_copies": 0, "downlinks": 0}
        self.tap = Tap(self.log)  # lora_listen (issue 20): told of every rxpk after it was handled
        self._transport: asyncio.DatagramTransport | None = None
        self._emit: Emit | None = None
        self._last_ok: Stamp | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._rx2: dict[int, tuple[gwmp.TxPk, str]] = {}  # PULL_RESP token -> its RX2 twin, until TX_ACK  # downlinks waiting for their state to reach the disk
        self._bind_error = ""
        self._down = False
        self._rng = random.Random()
        self.bridge = Bridge(self.cfg.upstream, self._to_forwarder) if self.cfg.upstream else None

    # -- Driver ---------------------------------------------------------------------------------

    def health(self) -> DriverHealth:
        now = self.clock.monotonic()
        reason = self._bind_error or self.forwarders.down_reason(now)
        if reason:
            state = DriverState.DOWN
        elif self.misconfigured or self.store.error:
            state = DriverState.DEGRADED
        else:
            state = DriverState.OK if self.forwarders.by_eui else DriverState.STARTING
        bridge = self.bridge.counters if self.bridge else {}
        detail: dict[str, Any] = {
            "reason": reason, "region": self.region.name, "listen": f"{self.cfg.bind_host}:{self.cfg.bind_port}",
            "adr": "off (not implemented: devices keep their data rate)",
            "counter_state": self.store.health(), "misconfigured": dict(self.misconfigured),
            "forwarders": {e: f.snapshot(now) for e, f in self.forwarders.by_eui.items()},
            "devices": {d: r.snapshot(self.ns.sessions.get(d), self.ns.last_fcnt(d)) for d, r in self.ns.records.items()},
        }
        if self.bridge is not None:
            detail["upstream"] = {"address": self.cfg.upstream, "error": self.bridge.error}
        counters = {**self.counters, "tap_errors": self.tap.errors, **bridge, **self.ns.guard.totals(), **self.store.counters}
        return DriverHealth(state, self._last_ok, counters, detail)

    async def run(self, emit: Emit) -> None:
        """Bind the UDP port (retrying while it is taken), then serve until cancelled."""
        self._emit = emit
        loop = asyncio.get_running_loop()
        tries = 0
        bridge_task: asyncio.Task[None] | None = None
        flusher = loop.create_task(self.store.run(), name=f"lorawan:{self.ctx.port_name}:counters")
        try:
            while self._transport is None:
                try:
                    self._transport, _ = await loop.create_datagram_endpoint(
                        lambda: _Proto(self), local_addr=(self.cfg.bind_host, self.cfg.bind_port))
                except OSError as exc:
                    tries += 1
                    self._bind_error = f"cannot bind udp {self.cfg.bind_host}:{self.cfg.bind_port}: {exc.strerror or exc}"
                    (self.log.warning if tries == 1 else self.log.debug)("bind_failed", error=self._bind_error, tries=tries)
                    await asyncio.sleep(min(0.5 * 2 ** min(tries, 6), 30.0))
            self._bind_error = ""
            sock = self._transport.get_extra_info("socket")
            if sock is not None:  # a burst of PUSH_DATA while the loop is busy must not overflow (kernel caps at rmem_max)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            self.log.info("gwmp_listening", address=f"{self.cfg.bind_host}:{self.cfg.bind_port}", region=self.region.name)
            if self.bridge is not None:  # in the background: resolving the upstream's name may take seconds
                bridge_task = asyncio.create_task(self.bridge.open())
            next_bridge_try = self.clock.monotonic() + BRIDGE_RETRY_S
            while True:
                await asyncio.sleep(TICK_S)
                self._tick()
                # An upstream that did not resolve is retried, also in the background.
                if self.bridge is not None and self.bridge.error and (bridge_task is None or bridge_task.done()) \
                        and self.clock.monotonic() >= next_bridge_try:
                    bridge_task = asyncio.create_task(self.bridge.open())
                    next_bridge_try = self.clock.monotonic() + BRIDGE_RETRY_S
        finally:
            self._emit = None
            for task in (flusher, bridge_task, *self._sending):
                if task is not None:
                    task.cancel()
            await asyncio.gather(flusher, return_exceptions=True)  # its finally writes the last state
            if self.bridge is not None:
                self.bridge.close()
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def _tick(self) -> None:
        now = self.clock.monotonic()
        reason = self.forwarders.down_reason(now)
        if bool(reason) != self._down:  # log the transition once (the reason's seconds change every tick)
            self._down = bool(reason)
            if reason:
                self.log.warning("forwarder_silent", reason=reason)
            else:
                self.log.info("forwarder_heard")
        for f in self.forwarders.by_eui.values():
            heard = f.last_heard()
            f.silent = heard is None or now - heard > self.cfg.forwarder_timeout_s

    # -- receive path ---------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """From the socket: never raises (a bad datagram is counted, not fatal)."""
        self.counters["datagrams"] += 1
        try:
            pkt = gwmp.parse(data)
        except FrameError as exc:
            self._reject_datagram(exc.reason, data, exc.detail)
            return
        if self.bridge is not None and pkt.ident in (gwmp.Ident.PUSH_DATA, gwmp.Ident.PULL_DATA, gwmp.Ident.TX_ACK):
            self.bridge.to_upstream(data)  # verbatim: the upstream sees the forwarder's own EUI and tokens
        try:
            self._packet(pkt, addr)
        except Exception as exc:  # noqa: BLE001 - the radio path must survive our own bug too; counted and logged
            self._bump("internal_errors")
            self.log.error("datagram_failed", error=repr(exc), data=data[:64].hex())

    def _packet(self, pkt: gwmp.Packet, addr: tuple[str, int]) -> None:
        I = gwmp.Ident  # noqa: E741 - short alias for the GWMP identifiers compared below
        if pkt.ident in (I.PUSH_DATA, I.PULL_DATA):
            now = self.clock.monotonic()
            fwd, refused = self.forwarders.admit(pkt.eui, now)
            if fwd is None:
                self._reject_datagram(refused, pkt.eui)
                return
            fwd.version = pkt.version
            ack_ident = I.PUSH_ACK if pkt.ident is I.PUSH_DATA else I.PULL_ACK
            self._send(gwmp.ack(pkt.version, pkt.token, ack_ident), addr)
            if pkt.ident is I.PULL_DATA:
                fwd.pull_addr, fwd.last_pull_mono = addr, now
                fwd.pulls += 1
                return
            fwd.last_push_mono = now
            fwd.pushes += 1
            if pkt.stat is not None:
                fwd.stat = {k: v for k, v in pkt.stat.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
            for reason in pkt.rejected:
                self._bump(f"reject_rxpk_{reason}")
                if self.tap:  # a packet the forwarder could not hand over whole (bad CRC...): heard, nothing more
                    self.tap.notify(Heard(self.ctx.port_name, "", "", f"rxpk_{reason}", 0))
            for rx in pkt.rxpk:
                self._uplink(rx, fwd.eui)
        elif pkt.ident is I.TX_ACK:
            # Counted by name only for the errors PROTOCOL.md lists: the string comes from the datagram.
            self._bump(f"tx_ack_{pkt.tx_error.lower() if pkt.tx_error in TX_ACK_ERRORS else 'other' if pkt.tx_error else 'ok'}")
            rx2 = self._rx2.pop(pkt.token, None)
            if pkt.tx_error in RX2_RETRY_ERRORS and rx2 is not None:
                self._bump("downlinks_rx2")  # RX1 missed (a busy Pi, a collision): the same frame in RX2
                self._transmit(*rx2)
            elif pkt.tx_error:
                self.log.warning("downlink_refused_by_forwarder", error=pkt.tx_error)
        else:
            self._reject_datagram(f"unexpected_{pkt.ident.name.lower()}", b"")

    def add_observer(self, observer: RadioObserver) -> Callable[[], None]:
        """RadioTap (drivers/base.py): the lora_listen diagnostic hears what this forwarder hears."""
        return self.tap.add(observer)

    def _uplink(self, rx: gwmp.RxPk, eui: str) -> None:
        verdict, v = self._judge(rx, eui)
        if self.tap:  # after the items went out: a listener never delays an alarm
            kind, source = mac.source_of(rx.data)
            self.tap.notify(Heard(self.ctx.port_name, source, v.device_id, verdict, len(rx.data), kind,
                                  v.fcnt if v.fcnt >= 0 else None, rx.rssi_dbm, rx.lsnr_db, rx.freq_mhz, rx.datr))

    def _judge(self, rx: gwmp.RxPk, eui: str) -> tuple[str, Verdict]:
        """Run the network server on one rxpk and act on its verdict; returns ("accepted" or the counted
        reason, the verdict)."""
        self.counters["uplinks"] += 1
        stamp = self.clock.now()
        v = self.ns.uplink(rx, self.clock.monotonic(), stamp.wall_s)
        if v.kind == "duplicate":
            self.counters["duplicate_copies"] += 1
            return "duplicate", v
        if v.kind == "rejected":
            first = f"reject_{v.reason}" not in self.counters
            self._bump(f"reject_{v.reason}")
            (self.log.warning if first else self.log.debug)("frame_rejected", reason=v.reason, device_id=v.device_id or None,
                                                            data=rx.data[:32].hex())
            if v.security:
                self._out(Event(v.device_id, EventKind.SECURITY, stamp, code=v.security, detail=v.detail, via=VIA))
            return v.reason, v
        self._last_ok = stamp
        verdict = "accepted"
        if v.kind == "join":
            self.counters["joins"] += 1
            self.log.info("device_joined", device_id=v.device_id, **v.detail)
        else:
            verdict = self._data(v, rx, stamp)
        if v.downlink is None:
            return verdict, v
        if v.durable:
            # A JoinAccept's session and nonce, or a new downlink-counter block, reach the disk before the
            # frame goes out (RX1 is 1-5 s away; the write is in a thread, the loop never waits for it).
            task = asyncio.get_running_loop().create_task(self._persist_then_send(v.downlink, eui))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        else:
            self._transmit(v.downlink, eui)
        return verdict, v

    async def _persist_then_send(self, txpk: gwmp.TxPk, eui: str) -> None:
        await self.store.flush()
        self._transmit(txpk, eui)

    def _data(self, v: Verdict, rx: gwmp.RxPk, stamp: Stamp) -> str:
        if v.reason == "retransmission":
            self._bump("retransmissions")  # delivered already; the ACK (if confirmed) goes out again
            return "retransmission"
        items: list[Item] = []
        verdict = "accepted"
        if v.fport is not None and v.payload:
            meta = CodecMeta(v.device_id, stamp, VIA, rssi_dbm=rx.rssi_dbm, snr_db=rx.lsnr_db)
            try:
                items = self.codecs[v.device_id](v.payload, meta)
            except CodecError as exc:
                self._bump("reject_codec_error")
                self.ns.records[v.device_id].reject("codec_error")
                self.log.warning("payload_rejected", device_id=v.device_id, error=str(exc), fcnt=v.fcnt)
                verdict = "codec_error"
        if v.check is None or v.check.verdict.accepted:
            if v.check is not None and v.check.verdict is SeqVerdict.RESYNC:
                # A device that restarted its counter (ABP battery change), recognised by a run of frames.
                self.log.warning("counter_reset", device_id=v.device_id, fcnt=v.fcnt, last_fcnt=v.last_fcnt)
                self._out(Event(v.device_id, EventKind.COUNTER_RESET, stamp, code="counter_reset", via=VIA,
                                detail={"fcnt": v.fcnt, "last_fcnt": v.last_fcnt}))
            for item in items:
                self._out(item)
            return verdict
        # Replay policy (drivers/sequence.py, issue 15, CLARIFICATIONS "Turn 2"): recorded and raised as a
        # security event; a fire/gas alarm inside it is still raised, flagged, and the rest is dropped.
        passed, dropped = screen(items, v.check.verdict)
        self.ns.guard.note_screened(v.seq_key, len(passed), dropped)
        self.log.warning("replay_suspect", device_id=v.device_id, fcnt=v.fcnt, last_fcnt=v.last_fcnt, alarms_passed=len(passed))
        self._out(security_event(v.device_id, stamp, VIA, v.fcnt, v.check, alarm=bool(passed)))
        for item in passed:
            self._out(item)
        return "replay_suspect"

    def _transmit(self, txpk: gwmp.TxPk, eui: str) -> None:
        fwd = self.forwarders.downlink_target(eui)
        if fwd is None or fwd.pull_addr is None:
            self._bump("downlink_no_forwarder")  # no PULL_DATA yet: the forwarder's NAT path is unknown
            return
        token = self._rng.getrandbits(16)
        self._send(gwmp.pull_resp(fwd.version, token, txpk.json()), fwd.pull_addr)
        self.counters["downlinks"] += 1
        if txpk.fallback is not None:
            self._rx2[token] = (txpk.fallback, eui)
            while len(self._rx2) > MAX_PENDING_RX2:  # a forwarder that never answers TX_ACK (protocol v1)
                del self._rx2[next(iter(self._rx2))]

    def _to_forwarder(self, datagram: bytes) -> None:
        """An upstream PULL_RESP: to the forwarder whose keepalive came last (it holds the NAT path)."""
        fwd = max((f for f in self.forwarders.by_eui.values() if f.pull_addr), key=lambda f: f.last_pull_mono or 0.0, default=None)
        if fwd is not None and fwd.pull_addr is not None:
            self._send(datagram, fwd.pull_addr)

    # -- helpers ----------------------------------------------------------------------------------

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)

    def _out(self, item: Item) -> None:
        if self._emit is not None:
            self._emit(item)

    def _bump(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _reject_datagram(self, reason: str, data: bytes, detail: str = "") -> None:
        first = f"reject_{reason}" not in self.counters
        self._bump(f"reject_{reason}")
        (self.log.warning if first else self.log.debug)("datagram_rejected", reason=reason, detail=detail or None,
                                                        data=data[:32].hex())
