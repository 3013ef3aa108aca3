"""The NB-IoT modem role (driver "nbiot_bc95", BC95/BC28 NSO dialect): bring-up, UDP socket, datagrams read
on +NSONMI and acknowledged through NSOST, registration watched, re-init on reboot evidence.

Bring-up order from protocols.md §1.6: AT, ATE0, CMEE=1, SIM, NBAND, CFUN=1, CPSMS=0, CEDRXS=0,5, NSONMI,
CGATT=1, poll CEREG?/CGATT? with backoff, CGPADDR, NSOCR. With mode = "relay" no modem is opened and
only reports relayed by the platform (`submit_relay`) come in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

from drivers.base import DriverContext, DriverHealth, DriverState, Emit
from drivers.cellular import info, status
from drivers.cellular.at import Urc
from drivers.cellular.channel import AtChannel, at_counters
from drivers.cellular.config import NbiotPort
from drivers.cellular.info import Datagram
from drivers.cellular.ingest import Ingest
from drivers.cellular.relay import RelayIngest
from drivers.counters import CounterStore
from drivers.reopen import FIRST_DELAY_S, Reopen
from gateway.errors import CodecError, DeviceTimeout, FrameError, GatewayError, ModemError, ModemUnavailable
from gateway.model import Item, Stamp

VIA = "nbiot-modem"
BOOT_SETTLE_S = 1.0  # a rebooting BC95 prints REBOOT_CAUSE_*, Neul, OK over ~1 s before it takes commands
MAX_READS_PER_DRAIN = 64  # a remaining_len that never reaches 0 must not pin the driver
SEND_BUSY_RETRIES = 3  # mbed retries UDP sends 3x on 159/536/537 (protocols.md §1.2)
SEND_BUSY_PAUSE_S = 0.03


class NbiotDriver:
    name = "nbiot_bc95"

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx, self.clock = ctx, ctx.clock
        self.cfg: NbiotPort = ctx.port
        self.log = ctx.log
        # Sequence numbers survive a restart (drivers/counters.py): a replayed datagram after one is a suspect.
        self.store = CounterStore(getattr(ctx, "state_dir", None), ctx.port_name, self.log)
        self.ingest = Ingest(tuple(ctx.devices), ctx.profiles, ctx.clock, ctx.port.dedupe_window_s, store=self.store)
        self.relay = RelayIngest(self.ingest, self._emit_item, ctx.clock, self.log)
        self.modem = status.ModemStatus()
        self.counters: Counter[str] = Counter()
        self.state = DriverState.STARTING
        self.last_ok: Stamp | None = None
        self.last_datagram: Stamp | None = None
        self.socket: int | None = None
        self._emit: Emit | None = None
        self._wake = asyncio.Event()
        self._reinit_reason = ""
        self._pending: list[int] = []  # sockets with data announced by +NSONMI mode 1
        self._inline: list[tuple[int, info.Datagram]] = []  # mode 2: data inside the URC
        self._reopen = Reopen(self.log, self.cfg.reopen_cap_s)  # modem reopen backoff and its warn-once report
        self._serving = False  # registration changes move the state only after bring-up
        self._channel: AtChannel | None = None
        self._at_totals: Counter[str] = Counter()  # AT counters of closed channels (they survive a reopen)

    # ---- driver boundary -----------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        flusher = asyncio.get_running_loop().create_task(self.store.run(), name=f"nbiot:{self.ctx.port_name}:counters")
        try:
            await self._run(emit)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher

    async def _run(self, emit: Emit) -> None:
        self._emit = emit
        if self.cfg.mode == "relay":
            self.state = DriverState.OK
            await asyncio.Event().wait()  # relayed reports arrive through submit_relay
        while True:
            ch = AtChannel(self.log, self.cfg.timeouts, self._on_urc, self._on_reboot, self._on_lost)
            self._channel = ch
            delay_s = FIRST_DELAY_S
            try:
                await ch.open(self.cfg.path, self.cfg.baud)
                await self._session(ch)
            except (GatewayError, OSError) as exc:
                self.state = DriverState.DOWN
                delay_s = self._fail("modem_unavailable", exc)
            finally:
                ch.close()
                self.socket = None
                self._at_totals.update(at_counters(ch))
            # Backoff min(base * 2**tries, cap) with jitter (STYLE "Reconnect"), afresh once the modem was up.
            await asyncio.sleep(delay_s)

    def health(self) -> DriverHealth:
        at = self._at_totals + (at_counters(self._channel) if self._channel is not None else Counter())
        counters = {**self.counters, **self.ingest.counters, **at, **self.store.counters}
        guard = self.ingest.guard
        detail = {**self.modem.as_dict(), "mode": self.cfg.mode, "socket": self.socket,
                  "last_datagram_wall_s": self.last_datagram.wall_s if self.last_datagram else None,
                  "counter_state": self.store.health(),
                  "devices": {d: {"last_seq": guard.last(d), "replay": guard.stats(d)} for d in self.ingest.by_id}}
        return DriverHealth(self.state, self.last_ok, counters, detail)

    def info(self) -> dict[str, Any]:
        """For `gateway modem info` through the control socket."""
        return self.health().detail

    def submit_relay(self, body: dict[str, Any]) -> dict[str, Any]:
        """The platform-relay path (relay.RelayIngest.submit); the uplink calls this."""
        return self.relay.submit(body)

    # ---- session -------------------------------------------------------------------------------

    async def _session(self, ch: AtChannel) -> None:
        """Bring up and serve until the port fails; re-init in place on reboot evidence."""
        while True:
            self._wake.clear()
            self._reinit_reason = ""
            try:
                await self._bring_up(ch)
                await self._serve(ch)
            except (ModemUnavailable, ModemError, DeviceTimeout, FrameError):
                if not self._reinit_reason or not ch.is_open:
                    raise
            self.counters["reinits"] += 1
            self.log.info("modem_reinit", reason=self._reinit_reason)
            self.state = DriverState.STARTING
            await asyncio.sleep(BOOT_SETTLE_S)

    async def _bring_up(self, ch: AtChannel) -> None:
        self.socket = None
        self._serving = False
        await self._sync(ch)
        for cmd in ("ATE0", "AT+CMEE=1"):
            await ch.command(cmd)
        await status.read_sim(ch, self.modem)
        await status.read_identity(ch, self.modem)
        await self._optional(ch, "AT+NBAND=" + ",".join(str(b) for b in self.cfg.bands))
        await ch.command("AT+CFUN=1")
        # PSM and eDRX off: a receiving gateway modem must stay reachable (protocols.md §1.4).
        for cmd in ("AT+CPSMS=0", "AT+CEDRXS=0,5"):
            await self._optional(ch, cmd)
        await ch.command(f"AT+NSONMI={self.cfg.nsonmi_mode}")
        await ch.command("AT+CEREG=2")
        await ch.command("AT+CGATT=1")
        await self._wait_registered(ch)
        await status.read_address(ch, self.modem)
        lines = await self._open_socket(ch)
        if not lines or not lines[0].isdigit() or not 0 <= int(lines[0]) <= info.MAX_SOCKET:
            raise FrameError(f"NSOCR answered {lines!r}, not a socket id 0..{info.MAX_SOCKET}")
        self.socket = int(lines[0])
        await status.read_network_time(ch, self.modem, self.clock)
        await self._refresh(ch)
        self.state = DriverState.OK
        self.last_ok = self.clock.now()
        self._serving = True
        if not self._reopen.opened("modem_recovered", ip=self.modem.ip, socket=self.socket):
            self.log.info("modem_ready", ip=self.modem.ip, socket=self.socket, imei=self.modem.imei)

    async def _open_socket(self, ch: AtChannel) -> tuple[str, ...]:
        cmd = f"AT+NSOCR=DGRAM,17,{self.cfg.listen_port},1"
        try:
            return await ch.command(cmd)
        except ModemError:
            # Re-init without a module reboot (we reopened the port): our old socket still holds the
            # port and the BC95 refuses a second one. It has no "list sockets": close them all, once.
            self.counters["stale_sockets_closed"] += 1
            for sock in range(info.MAX_SOCKET + 1):
                await self._optional(ch, f"AT+NSOCL={sock}")
            return await ch.command(cmd)

    async def _sync(self, ch: AtChannel) -> None:
        """AT until OK: a modem just powered up answers after a second or so."""
        for attempt in range(10):
            try:
                await ch.command("AT")
                return
            except DeviceTimeout:
                await asyncio.sleep(0.2 * (attempt + 1))
        raise ModemUnavailable("no answer to AT (modem off, wrong port or baud)")

    async def _optional(self, ch: AtChannel, cmd: str) -> None:
        try:
            await ch.command(cmd)
        except ModemError as exc:
            self.counters["optional_refused"] += 1
            self.log.debug("modem_command_refused", command=cmd, error=str(exc))

    async def _wait_registered(self, ch: AtChannel) -> None:
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + self.cfg.attach_timeout_s, 0.1
        while True:
            stat = await status.read_registration(ch, self.modem)
            if stat in info.REGISTERED and await status.read_attach(ch, self.modem):
                return
            self.state = DriverState.DEGRADED
            if loop.time() > deadline:
                raise ModemUnavailable(f"not registered after {self.cfg.attach_timeout_s:g} s ({info.CEREG_STAT[stat]})")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def _serve(self, ch: AtChannel) -> None:
        loop = asyncio.get_running_loop()
        next_status = loop.time() + self.cfg.status_interval_s
        while not self._reinit_reason:
            if not (self._pending or self._inline):
                # Not registered: look every few seconds (URCs can be missed while the radio flaps).
                wait_s = next_status - loop.time() if self.modem.registered else min(2.0, next_status - loop.time())
                # asyncio.timeout, not wait_for: a stop (cancel) landing together with a URC's wake-up
                # is swallowed by 3.11's wait_for (gh-86296) and the driver would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, wait_s)):
                        await self._wake.wait()
            self._wake.clear()
            if self._reinit_reason:
                return
            if not ch.is_open:
                raise ModemUnavailable("serial port lost")
            while self._inline:
                sock, dg = self._inline.pop(0)
                await self._datagram(ch, dg, self.clock.now())
            while self._pending:
                await self._drain(ch, self._pending.pop(0))
            if loop.time() >= next_status:
                await self._refresh(ch)
                next_status = loop.time() + self.cfg.status_interval_s
            elif not self.modem.registered:
                await self._refresh(ch)

    async def _refresh(self, ch: AtChannel) -> None:
        try:
            await status.read_radio(ch, self.modem)
            stat = await status.read_registration(ch, self.modem)
        except FrameError as exc:
            self.counters["bad_status_lines"] += 1
            self.log.debug("modem_status_unreadable", error=str(exc))
            return
        self._registration_changed(stat)

    # ---- datagrams -----------------------------------------------------------------------------

    async def _drain(self, ch: AtChannel, sock: int) -> None:
        """NSORF until remaining = 0 (protocols.md §1.6); bounded so a lying modem cannot pin us."""
        for _ in range(MAX_READS_PER_DRAIN):
            try:
                lines = await ch.command(f"AT+NSORF={sock},{info.MAX_DATAGRAM}")
            except ModemError as exc:
                # Socket gone or a stray ERROR on the line: the next +NSONMI or re-init recovers.
                self._reject("nsorf_failed", exc)
                return
            stamp = self.clock.now()  # the reading's time is when its datagram arrived
            if not lines:
                return
            try:
                dg = info.nsorf(lines[0])
            except FrameError as exc:
                self._reject("datagram_rejected", exc)
                continue
            await self._datagram(ch, dg, stamp)
            if dg.remaining == 0:
                return
        self.counters["drain_capped"] += 1
        self.log.warning("nsorf_drain_capped", socket=sock, reads=MAX_READS_PER_DRAIN)

    async def _datagram(self, ch: AtChannel, dg: Datagram, stamp: Stamp) -> None:
        self.counters["datagrams"] += 1
        self.log.debug("datagram_rx", ip=dg.ip, port=dg.port, hex=dg.data.hex())
        try:
            accepted = self.ingest.accept(dg.data, VIA, stamp=stamp, rssi_dbm=self.modem.csq_dbm)
        except (FrameError, CodecError) as exc:
            self._reject("datagram_rejected", exc, ip=dg.ip)
            return
        self.last_datagram = stamp
        if accepted.replay_suspect:
            self.log.warning("replay_suspect", device_id=accepted.device.id, ip=dg.ip, items=len(accepted.items))
        for item in accepted.items:
            self._emit_item(item)
        if accepted.ack is not None:
            await self._send(ch, dg.ip, dg.port, accepted.ack, stamp)

    async def _send(self, ch: AtChannel, ip: str, port: int, data: bytes, received: Stamp) -> None:
        cmd = f"AT+NSOST={self.socket},{ip},{port},{len(data)},{data.hex().upper()}"
        for attempt in range(SEND_BUSY_RETRIES + 1):
            try:
                await ch.command(cmd)
                break
            except ModemError as exc:
                if not exc.busy or attempt == SEND_BUSY_RETRIES:
                    self._reject("ack_failed", exc, ip=ip)
                    return
                await asyncio.sleep(SEND_BUSY_PAUSE_S)
        self.counters["acks_sent"] += 1
        if (self.clock.monotonic_ns() - received.mono_ns) / 1e9 > self.cfg.ack_within_s:
            self.counters["acks_late"] += 1

    def _emit_item(self, item: Item) -> None:
        if self._emit is None:
            raise ModemUnavailable("driver is not running")
        self._emit(item)

    # ---- URCs ----------------------------------------------------------------------------------

    def _on_urc(self, urc: Urc) -> None:
        if urc.prefix == "+NSONMI":
            try:
                values = urc.line.split(":", 1)[1].split(",")
                if len(values) == 5:  # mode 2: +NSONMI:<s>,<ip>,<port>,<len>,<hex>
                    dg = info.nsorf(",".join(values) + ",0")
                    self._inline.append((dg.socket, dg))
                else:
                    sock, _ = info.nsonmi(urc.line)
                    if sock not in self._pending:
                        self._pending.append(sock)
            except (FrameError, IndexError) as exc:
                self._reject("urc_rejected", FrameError(str(exc)))
                return
        elif urc.prefix == "+NSOCLI":
            self._request_reinit(f"socket closed ({urc.line})")
        elif urc.prefix == "+CEREG":
            try:
                self._registration_changed(info.cereg_stat(urc.line, urc=True))
            except FrameError as exc:
                self._reject("urc_rejected", exc)
        self._wake.set()

    def _on_reboot(self, line: str) -> None:
        self._request_reinit(f"reboot evidence: {line}")

    def _on_lost(self, exc: Exception | None) -> None:
        self._wake.set()

    def _request_reinit(self, reason: str) -> None:
        if not self._reinit_reason:
            self.log.warning("modem_reinit_needed", reason=reason)
        self._reinit_reason = reason
        self._wake.set()

    def _registration_changed(self, stat: int) -> None:
        was = self.modem.registered
        self.modem.cereg = stat
        if not self._serving:
            return
        if was and not self.modem.registered:
            self.state = DriverState.DEGRADED
            self.log.warning("network_lost", registration=info.CEREG_STAT[stat])
        elif not was and self.modem.registered:
            self.state = DriverState.OK
            self.last_ok = self.clock.now()
            self.log.info("network_recovered")

    def _reject(self, counter: str, exc: Exception, **kv: object) -> None:
        self.counters[counter] += 1
        level = "warning" if self.counters[counter] == 1 else "debug"
        getattr(self.log, level)(counter, error=str(exc), **kv)

    def _fail(self, event: str, exc: Exception) -> float:
        """Report the modem failure (first WARNING, repeats DEBUG); return the seconds to wait before reopening."""
        return self._reopen.failed(event, exc, path=self.cfg.path)
