"""E22 module simulator (product code): the module side of the UART. Answers configuration commands
exactly (FF FF FF on bad format) in mode 10 read from the pin files (or entered by the 2024 firmware's
software mode switching, REG1 b4), outputs sensor frames in sub-packets with the RSSI byte when REG3 says
so, records downlinks, and injects radio faults. `edition` "2024" or "2018" models the two firmware
editions of the manual: air-rate codes 000/001, the RSSI byte formula and REG1 b4 differ.
`gateway simulate lora --pty LINK --sensor smoke:0x1A2B3C4D:<key hex> --time-scale 60 [--edition 2018]`
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import click

from drivers.lora import e22
from drivers.lora.config import AIR_RATES_BY_EDITION
from drivers.lora.frame import COMMANDS, KEYLESS, Deframer, Frame, FrameType, rssi_byte, sub_packets
from drivers.lora.pins import Mode, Pins
from drivers.lora.simsensors import SimSensor
from drivers.simport import SimPort, serve_until_interrupted

CONFIG_IDLE_S = 0.02  # the module ends a configuration command on a UART pause
RESET_SILENT_S = 0.3  # self-check after a reset: no output, AUX low (protocols.md §2.1)
FAULTS = ("truncated", "bit_flip", "duplicate", "replay", "noise", "module_reset", "wrong_channel")


@dataclass(frozen=True)
class Downlink:
    address: int  # ADDH ADDL the gateway sent to
    channel: int
    frame: Frame | None  # decoded (None when it did not parse)
    raw: bytes


class LoraSimulator:
    """start(path)/stop(); add_sensor(); trigger(device, reason); set_fault(name); downlinks."""

    def __init__(self, regs: e22.E22Registers | None = None, pins: Pins | None = None, time_scale: float = 1.0,
                 air_time: bool = True, seed: int | None = None, edition: str = "2024") -> None:
        if edition not in AIR_RATES_BY_EDITION:
            raise ValueError(f"unknown E22 firmware edition {edition!r} (known: {', '.join(AIR_RATES_BY_EDITION)})")
        self.edition = edition
        self.soft_mode: Mode | None = None  # set by C0 C1 C2 C3 02 <mode> (2024 edition, REG1 b4): overrides M0/M1
        self.last_rssi_dbm = -120
        self.noise_dbm = -110
        self.regs = regs or e22.E22Registers(address=0xFFFF, rssi_byte=True, fixed_point=True)
        self.pins = pins or Pins("/nonexistent", None, None, None)
        self.sensor_channel = self.regs.channel  # the sensors transmit here
        self.time_scale, self.air_time = time_scale, air_time
        self.rng = random.Random(seed)
        self.sensors: dict[int, SimSensor] = {}
        self.muted: set[int] = set()  # sensors gone silent (battery dead, removed): they send nothing
        self.downlinks: list[Downlink] = []
        self.config_answers: list[bytes] = []
        self._faults: dict[str, int | None] = {}  # name -> target device (None: any)
        self._tasks: set[asyncio.Task[None]] = set()
        self._fd: int | None = None
        self._port: SimPort | None = None
        self._cfg_buf = bytearray()
        self._out = bytearray()
        self._cfg_timer: asyncio.TimerHandle | None = None
        self._tx = asyncio.Lock()
        self._silent_until = 0.0

    # -- control API ----------------------------------------------------------------------------

    def add_sensor(self, sensor: SimSensor, heartbeats: bool = True) -> SimSensor:
        self.sensors[sensor.device_id] = sensor
        if heartbeats and self._fd is not None:
            self._spawn(self._heartbeats(sensor))
        return sensor

    def trigger(self, device_id: int, reason: str, **values: float) -> None:
        """A scripted event now: e.g. trigger(0x1A2B3C4D, "alarm")."""
        self.send_frame(self.sensors[device_id].report(reason, **values), device_id)

    def set_fault(self, name: str, device_id: int | None = None) -> None:
        """One-shot faults hit the next frame (of `device_id` if given); noise and module_reset act now;
        wrong_channel stays until clear_fault (the module is configured for another channel)."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
        if name == "noise":
            self._write(bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(16, 200))))
        elif name == "module_reset":
            self._silent_until = asyncio.get_running_loop().time() + RESET_SILENT_S
            self.pins.set_aux(False)
            asyncio.get_running_loop().call_later(RESET_SILENT_S, self.pins.set_aux, True)
        elif name == "wrong_channel":
            self.regs = dataclasses.replace(self.regs, channel=(self.regs.channel + 7) % 84)
        else:
            self._faults[name] = device_id

    def clear_fault(self, name: str) -> None:
        self._faults.pop(name, None)
        if name == "wrong_channel":
            self.regs = dataclasses.replace(self.regs, channel=self.sensor_channel)

    def send_frame(self, raw: bytes, device_id: int | None = None) -> None:
        if device_id in self.muted:
            return
        self._spawn(self._transmit(raw, device_id))

    def send_raw(self, data: bytes) -> None:
        self._write(data)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, path: str, create_pty: bool = False) -> None:
        """Serve on `path`: the device end of a socat pair, or (create_pty) a new pty linked at `path`."""
        self._port = SimPort(path, create_pty)
        self._fd = self._port.open()
        self.pins.set_aux(True)
        asyncio.get_running_loop().add_reader(self._fd, self._readable)
        for s in self.sensors.values():
            self._spawn(self._heartbeats(s))

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_writer(self._fd)
        self._out.clear()
        if self._port is not None:
            self._port.close()
        self._fd = None

    def close_port(self) -> None:
        """Drop our end. In pty mode the gateway's path vanishes too (a USB unplug, reliability.md §0.8)."""
        if self._fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_writer(self._fd)
        self._out.clear()
        if self._port is not None:
            self._port.close()  # also removes our reader
        self._fd = None

    def open_port(self) -> None:
        """Plug back in: the same path, a fresh pty (heartbeat tasks keep running throughout)."""
        assert self._port is not None
        self._fd = self._port.open()
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    # -- the module's UART -----------------------------------------------------------------------

    def _readable(self) -> None:
        if self._fd is None:  # closed since the loop saw it readable
            return
        try:
            data = os.read(self._fd, 4096)
        except (BlockingIOError, OSError):
            return
        if not data or asyncio.get_running_loop().time() < self._silent_until:
            return  # resetting: the module drops what it hears
        mode = self.soft_mode if self.soft_mode is not None else self.pins.read_mode() if self.pins.mode_wired else Mode.NORMAL
        if mode is Mode.NORMAL and self._soft(data):
            return
        if mode is Mode.CONFIG:
            self._cfg_buf += data
            if self._cfg_timer:
                self._cfg_timer.cancel()
            self._cfg_timer = asyncio.get_running_loop().call_later(CONFIG_IDLE_S, self._config_command)
        elif mode is Mode.NORMAL:
            self._downlink(data)

    def _soft(self, data: bytes) -> bool:
        """2024 manual §7.2 REG1: `C0 C1 C2 C3 02 <mode>` switches mode when b4 is set; `C0 C1 C2 C3
        <start> <len>` reads noise / last RSSI when b5 is set. Anything else is data to transmit."""
        cmd = e22.soft_command(data)
        if cmd is None:
            return False
        a, b = cmd
        if a == e22.SOFT_MODE_REG and self.regs.software_mode_switch and self.edition == "2024" and b <= 3:
            self.soft_mode = Mode(b)
            self._write(bytes([0xC1, 0xC2, 0xC3, e22.SOFT_MODE_REG, b]))
            return True
        if self.regs.ambient_noise and a == 0 and 1 <= b <= 2:
            values = [rssi_byte(self.noise_dbm, self.edition), rssi_byte(self.last_rssi_dbm, self.edition)][:b]
            self._write(bytes([e22.READ, a, b, *values]))
            return True
        return False

    def _config_command(self) -> None:
        if self._soft(bytes(self._cfg_buf)):  # the way back to normal mode without pins
            self._cfg_buf.clear()
            return
        answer, self.regs = e22.module_answer(bytes(self._cfg_buf), self.regs)
        self._cfg_buf.clear()
        self.config_answers.append(answer)
        self._write(answer)

    def _downlink(self, data: bytes) -> None:
        """Fixed-point transmission from the gateway: ADDH ADDL CHAN frame."""
        keys = {i: s.key if s.key is not None else KEYLESS for i, s in self.sensors.items()}
        got = [f for f in Deframer(keys, rssi=False).feed(data[3:]) if isinstance(f, Frame)] if len(data) > 3 else []
        frame = got[0] if got else None
        self.downlinks.append(Downlink(int.from_bytes(data[:2], "big") if len(data) >= 2 else -1,
                                       data[2] if len(data) >= 3 else -1, frame, bytes(data)))
        if frame is None:
            return
        sensor = self.sensors.get(frame.device_id)
        if sensor is not None and frame.type is FrameType.COMMAND and frame.payload:
            names = {v: k for k, v in COMMANDS.items()}
            sensor.commands.append(names.get(frame.payload[0], f"0x{frame.payload[0]:02x}"))
            self.send_frame(sensor.frame(FrameType.COMMAND_ACK, frame.payload[:1]), sensor.device_id)

    async def _transmit(self, raw: bytes, device_id: int | None) -> None:
        """One sensor frame over the air into the UART, with the armed faults applied."""
        def hit(name: str) -> bool:
            if name in self._faults and self._faults[name] in (None, device_id):
                del self._faults[name]
                return True
            return False

        if self.regs.channel != self.sensor_channel:
            return  # tuned to another channel: the module hears nothing
        if hit("bit_flip"):
            b = bytearray(raw)
            b[self.rng.randrange(10, len(b))] ^= 1 << self.rng.randrange(8)  # in payload or MIC: the MIC must catch it
            raw = bytes(b)
        copies = [raw]
        if hit("duplicate"):
            copies.append(raw)
        sensor = self.sensors.get(device_id) if device_id is not None else None
        if hit("replay") and sensor is not None and len(sensor.sent) > 1:
            copies.append(sensor.sent[0])
        if hit("truncated"):
            copies[0] = raw[: max(4, len(raw) // 2)]
        air_bps = AIR_RATES_BY_EDITION[self.edition][self.regs.air_rate_code]
        async with self._tx:
            for frame in copies:
                for packet in sub_packets(frame, self.regs.sub_packet):
                    if self.air_time:  # time on air at the air data rate, scaled like the heartbeats
                        await asyncio.sleep(len(packet) * 8 / air_bps / self.time_scale)
                    rssi = self.last_rssi_dbm = sensor.rssi_dbm if sensor else -90
                    self._write(packet + (bytes([rssi_byte(rssi, self.edition)]) if self.regs.rssi_byte else b""))

    def _write(self, data: bytes) -> None:
        """Queue bytes for the UART; a pty buffer holds only a few kB, so drain when writable."""
        if self._fd is None or asyncio.get_running_loop().time() < self._silent_until:
            return
        start_drain = not self._out
        self._out += data
        if start_drain:
            self._drain()

    def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            sent = os.write(self._fd, self._out) if self._fd is not None else len(self._out)
        except BlockingIOError:
            sent = 0
        except OSError:  # the gateway side vanished (unplug): drop what was queued
            sent = len(self._out)
        del self._out[:sent]
        if self._fd is not None:
            with contextlib.suppress(Exception):
                loop.remove_writer(self._fd)
        if self._out and self._fd is not None:
            loop.add_writer(self._fd, self._drain)

    async def _heartbeats(self, s: SimSensor) -> None:
        # Real sensors are not in step: start each at a random phase of its period.
        await asyncio.sleep(self.rng.uniform(0.05, 1.0) * s.heartbeat_s / self.time_scale)
        while True:
            self.send_frame(s.report("heartbeat"), s.device_id)
            await asyncio.sleep(s.heartbeat_s / self.time_scale)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _sensor_arg(text: str) -> SimSensor:
    """KIND:ID[:KEYHEX[:enc]] e.g. smoke:0x1A2B3C4D:000102...0f"""
    parts = text.split(":")
    if len(parts) < 2 or len(parts) > 4:
        raise click.BadParameter(f"{text!r}: use KIND:ID[:KEYHEX[:enc]]", param_hint="--sensor")
    try:
        key = bytes.fromhex(parts[2]) if len(parts) > 2 and parts[2] else None
        return SimSensor(int(parts[1], 0), parts[0], key, encrypt=len(parts) > 3 and parts[3] == "enc")
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="--sensor") from None


@click.command("lora")
@click.option("--pty", "pty", metavar="LINK", required=True, help="create a pty; the gateway opens LINK")
@click.option("--sensor", "sensors", multiple=True, required=True, help="KIND:ID[:KEYHEX[:enc]] (repeatable)")
@click.option("--time-scale", type=click.FloatRange(min=0.001), default=1.0, show_default=True,
              help="heartbeats and air time run this many times faster than real")
@click.option("--channel", type=click.IntRange(0, 83), default=23, show_default=True)
@click.option("--address", type=str, default="0xFFFF", show_default=True, help="the module's ADDH:ADDL")
@click.option("--no-rssi", is_flag=True, help="REG3 bit 7 off: no RSSI byte")
@click.option("--edition", type=click.Choice(sorted(AIR_RATES_BY_EDITION)), default="2024", show_default=True,
              help="E22 firmware edition (air-rate codes 000/001 and the RSSI byte differ)")
@click.option("--gpio-root", type=click.Path(file_okay=False), help="emulate M0/M1/AUX as files here")
@click.option("--pins", default="5,6,13", show_default=True, help="M0,M1,AUX gpio numbers (with --gpio-root)")
@click.option("--script", "script", multiple=True, metavar="SECONDS:ID:REASON",
              help="scripted event, e.g. 30:0x1A2B3C4D:alarm (repeatable; seconds of simulated time)")
def cli(pty: str, sensors: tuple[str, ...], time_scale: float, channel: int, address: str, no_rssi: bool, edition: str,
        gpio_root: str | None, pins: str, script: tuple[str, ...]) -> None:
    """Simulate an E22 module with LoRa sensors behind it until Ctrl-C."""
    regs = e22.E22Registers(address=int(address, 0), channel=channel, rssi_byte=not no_rssi, fixed_point=True)
    pin = Pins("/nonexistent", None, None, None)
    if gpio_root:
        m0, m1, aux = (int(p) for p in pins.split(","))
        pin = emulated_pins(Path(gpio_root), m0, m1, aux)
    sim = LoraSimulator(regs, pin, time_scale, edition=edition)
    for text in sensors:
        sim.add_sensor(_sensor_arg(text))

    async def start() -> None:
        await sim.start(pty, create_pty=True)
        click.echo(f"lora simulator: {len(sim.sensors)} sensors on {pty}, channel {channel}, time x{time_scale:g}")
        for item in script:
            at, dev, reason = item.split(":")
            asyncio.get_running_loop().call_later(float(at) / time_scale, sim.trigger, int(dev, 0), reason)

    serve_until_interrupted(start, sim.stop)


def emulated_pins(root: Path, m0: int, m1: int, aux: int) -> Pins:
    """sysfs-like gpioN/value files the driver (gpio_root = root) and the simulator share; mode 00, AUX high."""
    for gpio, value in ((m0, "0"), (m1, "0"), (aux, "1")):
        (root / f"gpio{gpio}").mkdir(parents=True, exist_ok=True)
        (root / f"gpio{gpio}" / "value").write_text(value + "\n")
    return Pins(str(root), m0, m1, aux)
