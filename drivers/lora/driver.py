"""The LoRa E22 driver: owns the UART, verifies the module where the mode pins are wired, turns
frames into Readings/Events through the profile's codec, and sends rate-limited fixed-point downlinks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

from drivers.base import Command, DriverContext, DriverHealth, DriverState, Emit, RadioObserver
from drivers.codecs import CodecMeta
from drivers.counters import CounterStore
from drivers.lora import crypto, e22
from drivers.lora.frame import COMMANDS, KEYLESS, Deframer, Frame, FrameType, encode
from drivers.lora.health import DeviceRadio, bump, heard
from drivers.lora.pins import Pins
from drivers.reopen import Reopen
from drivers.sequence import SequenceGuard, Verdict, is_alarm, screen, security_event
from drivers.tap import Tap
from gateway.errors import CodecError, CommandRejected, ConfigError, FrameError, GatewayError, TransientError
from gateway.model import Device, Event, EventKind, Stamp

TICK_S = 0.1  # how often a stalled partial frame is checked for expiry
TX_BLOCK = 16  # downlink counters reserved per state write (write-ahead: never reused after a crash)


class _Proto(asyncio.Protocol):
    """pyserial-asyncio-fast protocol: bytes to the driver, a future that ends with the port."""

    def __init__(self, driver: "LoraDriver") -> None:
        self.driver = driver
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.driver.on_bytes(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class LoraDriver:
    """Driver + Actuator for one [ports.X] driver = "lora_e22"."""

    name = "lora_e22"

    def __init__(self, ctx: DriverContext) -> None:
        from drivers.codecs.registry import CODECS

        self.ctx, self.cfg, self.clock, self.log = ctx, ctx.port, ctx.clock, ctx.log
        self.devices: dict[int, Device] = {}
        self.keys: dict[int, bytes | None] = {}
        self.codecs: dict[int, Any] = {}
        self.misconfigured: dict[str, str] = {}
        problems = []
        for dev in ctx.devices:
            dev_id, prof = int(dev.address), ctx.profiles[dev.profile]
            self.devices[dev_id] = dev
            if prof.codec not in CODECS:
                problems.append(f"profiles/{dev.profile}.toml: lora.codec: {prof.codec!r} is not a registered codec")
            self.codecs[dev_id] = CODECS.get(prof.codec)
            if not prof.keyed:
                self.keys[dev_id] = KEYLESS
            elif dev.id in ctx.secrets:
                self.keys[dev_id] = crypto.parse_key(dev.id, ctx.secrets[dev.id])
            else:
                # One sensor without its key must not silence the whole courtyard: its frames are
                # rejected (counted as unknown), the others run, health and selftest name the fix.
                self.misconfigured[dev.id] = f"profile {dev.profile} is keyed but the credentials file has no lora_keys.{dev.id}"
                self.log.error("lora_key_missing", device_id=dev.id, fix=f"add lora_keys.{dev.id} to the credentials file")
        if problems:
            raise ConfigError(problems)
        self.deframer = Deframer(self.keys, self.cfg.rssi_byte, self.cfg.sub_packet_bytes, edition=self.cfg.e22_edition)
        # Counters survive a restart (no trust on first use after one): drivers/counters.py, sequence.py.
        self.store = CounterStore(ctx.state_dir, ctx.port_name, self.log)
        self.replay = SequenceGuard(self.store, "lora", reorder_window=0, resync_frames=self.cfg.resync_frames,
                                    resync_min_s=self.cfg.resync_min_s)
        # The key's fingerprint is part of the state key: a re-keyed (replaced) sensor starts afresh.
        self._rkey = {i: f"{i:08x}:" + (hashlib.sha256(k).hexdigest()[:8] if k else "crc" if i in self.keys else "nokey")
                      for i, k in ((i, self.keys.get(i)) for i in self.devices)}
        self.pins = Pins(self.cfg.gpio_root, self.cfg.m0_gpio, self.cfg.m1_gpio, self.cfg.aux_gpio)
        self.radio = {i: DeviceRadio(d.id) for i, d in self.devices.items()}
        self.counters: dict[str, int] = {"frames": 0, "bytes_in": 0, "downlinks": 0, "port_opens": 0}
        self.verification = "pending"
        self._transport: asyncio.Transport | None = None
        self._emit: Emit | None = None
        self._last_ok: Stamp | None = None
        self._last_byte_mono = 0.0
        self._next_tx_mono = 0.0
        self._down_next: dict[int, int] = {}
        self._down_limit: dict[int, int] = {}
        self._port_error = ""
        self.tap = Tap(self.log)  # lora_listen (issue 20): told of every frame after it was handled

    # -- Driver ---------------------------------------------------------------------------------

    def health(self) -> DriverHealth:
        if self._transport is None:
            state = DriverState.DOWN
        elif self.misconfigured:
            state = DriverState.DEGRADED
        else:
            state = DriverState.OK if self._last_ok else DriverState.STARTING
        rejects = {f"reject_{k}": v for k, v in self.deframer.rejects.items()}
        counters = {**self.counters, "tap_errors": self.tap.errors, "discarded_bytes": self.deframer.discarded_bytes, **rejects,
                    **self.replay.totals(), **self.store.counters}
        devices = {r.device_id: {**r.snapshot(), "replay": self.replay.stats(self._rkey[i])} for i, r in self.radio.items()}
        detail = {"port_open": self._transport is not None, "port_error": self._port_error,
                  "module": self.verification, "e22_edition": self.cfg.e22_edition,
                  "misconfigured": dict(self.misconfigured), "counter_state": self.store.health(), "devices": devices}
        return DriverHealth(state, self._last_ok, counters, detail)

    async def run(self, emit: Emit) -> None:
        """Verify the module (pins wired), then own the port until cancelled; reopen with backoff."""
        import serial_asyncio_fast

        self._emit = emit
        flusher = asyncio.get_running_loop().create_task(self.store.run(), name=f"lora:{self.ctx.port_name}:counters")
        try:
            await self._verify()
            reopen = Reopen(self.log, self.cfg.reopen_cap_s)
            loop = asyncio.get_running_loop()
            while True:
                try:
                    # exclusive: the flock every opener of ours takes, so an installer's probe beside the
                    # daemon is refused instead of splitting the module's frames between two readers.
                    proto = _Proto(self)
                    transport, _ = await serial_asyncio_fast.create_serial_connection(
                        loop, lambda: proto, self.cfg.path, baudrate=self.cfg.baud, exclusive=True)
                except (OSError, ValueError) as exc:  # SerialException is an OSError
                    await asyncio.sleep(self._port_down(reopen, exc))
                    continue
                reopen.opened()
                self._port_error, self._transport = "", transport
                self.counters["port_opens"] += 1
                self.deframer.clear()
                try:
                    while not proto.lost.done():
                        await asyncio.wait({proto.lost}, timeout=TICK_S)
                        self._expire_stalled()
                finally:
                    self._transport = None
                    transport.close()
                await asyncio.sleep(self._port_down(reopen, proto.lost.result() or OSError("port closed")))
        finally:
            self._emit = None
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher

    async def _verify(self) -> None:
        if not self.pins.mode_wired and not self.cfg.software_mode_switch:
            self.verification = "skipped"
            self.log.warning("module_verification_skipped", reason="neither m0_gpio/m1_gpio nor software_mode_switch configured",
                             hint="the module's address, channel, air rate, fixed point and RSSI settings are trusted unchecked")
            return
        try:
            regs = await e22.verify(self.cfg)
        except e22.ModuleMismatch as exc:
            self.verification = "mismatch: " + "; ".join(exc.problems)
            self.log.error("module_mismatch", problems=exc.problems)
            raise
        except GatewayError as exc:
            self.verification = f"failed: {exc}"
            self.log.error("module_verification_failed", error=str(exc))
            raise
        self.verification = "verified"
        self.log.info("module_verified", channel=regs.channel, address=f"{regs.address:#06x}", air_rate_bps=regs.air_rate_bps)

    # -- receive path ---------------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        """From the protocol: never raises (a bad byte is counted, not fatal)."""
        self._last_byte_mono = self.clock.monotonic()
        self.counters["bytes_in"] += len(data)
        for item in self.deframer.feed(data):
            self._handle(item)

    def _expire_stalled(self) -> None:
        if self.deframer.pending and self.clock.monotonic() - self._last_byte_mono > self.cfg.frame_timeout_s:
            for item in self.deframer.expire():
                self._handle(item)

    def add_observer(self, observer: RadioObserver) -> Callable[[], None]:
        """RadioTap (drivers/base.py): the lora_listen diagnostic hears what this port hears."""
        return self.tap.add(observer)

    def _handle(self, item: Frame | FrameError) -> None:
        verdict = self._judge(item)
        if self.tap and verdict:  # after the items went out: a listener never delays an alarm
            self.tap.notify(heard(self.ctx.port_name, item, verdict, self.devices))

    def _judge(self, item: Frame | FrameError) -> str:
        """Handle one deframer result; returns "accepted", the counted rejection reason, or "" (garbage)."""
        if isinstance(item, FrameError):
            if item.reason == "no_sync":  # garbage between frames is counted (discarded_bytes), not logged
                return ""
            self.log.debug("frame_rejected", reason=item.reason, data=item.data.hex(" "))
            return item.reason
        radio = self.radio[item.device_id]
        dev = self.devices[item.device_id]
        if item.type is not FrameType.REPORT and item.type is not FrameType.COMMAND_ACK:
            return self._reject(radio, dev, "unexpected_type", item)
        stamp = self.clock.now()
        items: list[Any] = []
        if item.type is FrameType.REPORT:
            try:
                items = self.codecs[item.device_id](item.payload, CodecMeta(dev.id, stamp, "lora", rssi_dbm=item.rssi_dbm))
            except CodecError as exc:
                return self._reject(radio, dev, "codec_error", item, str(exc))
        alarm = any(is_alarm(i) for i in items)
        key = self._rkey[item.device_id]
        # Alarm frames make their counter durable within a second (drivers/counters.py URGENT_S).
        check = self.replay.check(key, item.fcnt, item.trailer.hex(), self.clock.monotonic(), urgent=alarm)
        if check.verdict is Verdict.DUPLICATE:
            return self._reject(radio, dev, "duplicate", item)
        if check.verdict is Verdict.SUSPECT:
            return self._suspect(radio, dev, item, items, check, stamp)
        radio.seen(item.fcnt, item.rssi_dbm, stamp.wall_s)
        self.counters["frames"] += 1
        self._last_ok = stamp
        if check.verdict is Verdict.RESYNC:
            radio.counter_resets += 1
            self.log.warning("counter_resync", device_id=dev.id, fcnt=item.fcnt, last_fcnt=check.last)
            self._out(Event(dev.id, EventKind.COUNTER_RESET, stamp, code="counter_reset", via="lora",
                            detail={"fcnt": item.fcnt, "last_fcnt": -1 if check.last is None else check.last}))
        elif check.verdict is Verdict.LEARN:
            self.log.info("counter_learned", device_id=dev.id, fcnt=item.fcnt, persisted=self.store.persisted)
        if item.type is FrameType.COMMAND_ACK:
            bump(self.counters, "command_acks")
            self.log.info("downlink_acknowledged", device_id=dev.id, command=item.payload[:1].hex())
            return "accepted"
        for out in items:
            self._out(out)
        return "accepted"

    def _suspect(self, radio: DeviceRadio, dev: Device, frame: Frame, items: list[Any], check: Any, stamp: Stamp) -> str:
        """A frame with a valid MIC/CRC at or below the last accepted counter: a security event; its
        alarm events still go out, flagged replay_suspect (CLARIFICATIONS "Turn 2"), the rest is dropped."""
        passed, dropped = screen(items, check.verdict)
        self.replay.note_screened(self._rkey[frame.device_id], len(passed), dropped)
        first = "replay_suspect" not in radio.rejects
        radio.reject("replay_suspect")
        (self.log.warning if first or passed else self.log.debug)(
            "replay_suspect", device_id=dev.id, fcnt=frame.fcnt, last_fcnt=check.last, alarms_passed=len(passed), dropped=dropped)
        self._out(security_event(dev.id, stamp, "lora", frame.fcnt, check, alarm=bool(passed)))
        for out in passed:
            self._out(out)
        return "replay_suspect"

    def _reject(self, radio: DeviceRadio, dev: Device, reason: str, frame: Frame, error: str = "") -> str:
        first = reason not in radio.rejects
        radio.reject(reason)
        bump(self.counters, f"reject_{reason}")
        # First of its kind per device WARNING, repeats DEBUG (STYLE "Errors and logging").
        (self.log.warning if first else self.log.debug)("frame_rejected", device_id=dev.id, reason=reason, fcnt=frame.fcnt, error=error)
        return reason

    def _out(self, item: Any) -> None:
        if self._emit is not None:
            self._emit(item)

    def _port_down(self, reopen: Reopen, exc: BaseException) -> float:
        self._port_error = str(exc)
        return reopen.failed("port_lost", exc)

    # -- downlink -------------------------------------------------------------------------------

    async def write(self, command: Command) -> None:
        """Send silence/acknowledge/self_test to a detector as a fixed-point transmission
        (ADDH ADDL CHAN frame). Raises CommandRejected (unknown device or target, rate limit) or
        TransientError (port down); waits for AUX idle where wired (DeviceTimeout if it stays busy)."""
        dev_id = next((i for i, d in self.devices.items() if d.id == command.device_id), None)
        if dev_id is None:
            raise CommandRejected("unknown_device", f"{command.device_id!r} is not on port {self.ctx.port_name}")
        prof = self.ctx.profiles[self.devices[dev_id].profile]
        if command.target not in prof.downlink or command.value is False:
            raise CommandRejected("unsupported_target", f"{command.device_id} accepts {prof.downlink or 'no commands'}")
        if command.device_id in self.misconfigured:
            raise CommandRejected("misconfigured", self.misconfigured[command.device_id])
        if self._transport is None:
            raise TransientError(f"lora port {self.ctx.port_name} is down: {self._port_error or 'not open'}")
        # One radio, half duplex: while it transmits it hears no alarm. Space transmissions out.
        now = self.clock.monotonic()
        slot = max(now, self._next_tx_mono)
        if slot - now > self.cfg.downlink_queue_max_s:
            bump(self.counters, "downlinks_refused")
            raise CommandRejected("rate_limited", f"next downlink slot in {slot - now:.0f} s")
        self._next_tx_mono = slot + self.cfg.downlink_interval_s
        await asyncio.sleep(slot - now)
        await self.pins.wait_idle(self.cfg.aux_timeout_s)
        fcnt = await self._next_down_fcnt(dev_id) & 0xFFFF
        payload = bytes([COMMANDS[command.target]])
        frame = encode(dev_id, fcnt, FrameType.COMMAND, payload, self.keys[dev_id], prof.encrypted)
        radio_addr = 0xFFFF if self.cfg.downlink_broadcast else dev_id & 0xFFFF
        if self._transport is None:
            raise TransientError(f"lora port {self.ctx.port_name} went down")
        self._transport.write(bytes([radio_addr >> 8, radio_addr & 0xFF, self.cfg.channel]) + frame)
        self.counters["downlinks"] += 1
        self.log.info("downlink_sent", device_id=command.device_id, target=command.target, fcnt=fcnt, reason=command.reason)

    async def _next_down_fcnt(self, dev_id: int) -> int:
        """Write-ahead reservation (drivers/counters.py): a block of TX_BLOCK counters is made durable
        before the first of them is sent, so a restarted gateway never repeats a downlink counter (a
        sensor applies the same rule as we do: above its last, accepted). A failed write is counted in
        health and the command still goes out."""
        if self._down_next.get(dev_id, 0) >= self._down_limit.get(dev_id, 0):
            start = self.store.reserve(f"lora-tx:{self._rkey[dev_id]}", TX_BLOCK)
            self._down_next[dev_id] = max(start, self._down_next.get(dev_id, 0))
            self._down_limit[dev_id] = start + TX_BLOCK
            await self.store.flush()
        fcnt = self._down_next[dev_id]
        self._down_next[dev_id] = fcnt + 1
        return fcnt
