"""Ebyte E22 (SX126x) configuration registers: the 9-byte register codec, the C0/C1/C2 commands and
their answers (both sides: the driver's verify() and the simulator's module), and the comparison
with our port config that refuses a mismatched module. Register map: protocols.md §2.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from drivers.lora.config import AIR_RATES_BPS, AIR_RATES_BY_EDITION, AMBIGUOUS_AIR_CODES, LoraPort
from drivers.lora.pins import Mode, Pins
from gateway.errors import DeviceTimeout, FrameError, GatewayError

WRITE_SAVED, READ, WRITE_VOLATILE = 0xC0, 0xC1, 0xC2
REG_COUNT = 9  # 00 ADDH .. 08 CRYPT_L
READ_ALL = bytes([READ, 0x00, REG_COUNT])  # "C1 00 09"
BAD_FORMAT = b"\xff\xff\xff"  # the module's answer to a malformed command (protocols.md §2.1, verify)
CONFIG_BAUD = 9600  # configuration mode talks 9600 8N1 only
# 2024 manual §7.2 REG1: with b4 ("software mode switching") set, the host switches modes over the UART
# instead of M0/M1: `C0 C1 C2 C3 02 <mode>` -> `C1 C2 C3 02 <mode>`. With b5 (ambient noise) set,
# `C0 C1 C2 C3 <start> <len>` in normal mode reads register 00 (noise RSSI) / 01 (last packet RSSI).
SOFT_PREFIX = bytes([0xC0, 0xC1, 0xC2, 0xC3])
SOFT_MODE_REG = 0x02

UART_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)  # REG0 b7-5
PARITIES = ("8N1", "8O1", "8E1", "8N1")  # REG0 b4-3
SUB_PACKETS = (240, 128, 64, 32)  # REG1 b7-6
POWERS_DBM = (22, 17, 13, 10)  # REG1 b1-0, E22-400T22


class ModuleMismatch(GatewayError):
    """The module's registers differ from the port config: the driver refuses to run."""

    def __init__(self, port: str, problems: list[str]) -> None:
        self.port = port
        self.problems = problems
        super().__init__(f"LoRa module on {port} does not match the config: " + "; ".join(problems)
                         + " (fix the config, or reconfigure the module, e.g. with Ebyte's RF_Setting tool)")


@dataclass(frozen=True)
class E22Registers:
    address: int = 0x0000
    netid: int = 0
    uart_baud: int = 9600
    parity: str = "8N1"
    air_rate_code: int = 2  # 2.4 kbit/s
    sub_packet: int = 240
    ambient_noise: bool = False
    software_mode_switch: bool = False  # REG1 b4 (2024 manual); a reserved bit in the 2018 editions
    power_dbm: int = 22
    channel: int = 23
    rssi_byte: bool = False
    fixed_point: bool = False
    relay: bool = False
    lbt: bool = False
    wor_role: bool = False
    wor_cycle: int = 3
    crypt: int = 0  # write-only on the module: always reads back 0

    @property
    def air_rate_bps(self) -> int:
        return AIR_RATES_BPS[self.air_rate_code]

    def to_bytes(self) -> bytes:
        reg0 = UART_BAUDS.index(self.uart_baud) << 5 | PARITIES.index(self.parity) << 3 | self.air_rate_code
        reg1 = (SUB_PACKETS.index(self.sub_packet) << 6 | self.ambient_noise << 5 | self.software_mode_switch << 4
                | POWERS_DBM.index(self.power_dbm))
        reg3 = (self.rssi_byte << 7 | self.fixed_point << 6 | self.relay << 5 | self.lbt << 4
                | self.wor_role << 3 | self.wor_cycle)
        return bytes([self.address >> 8, self.address & 0xFF, self.netid, reg0, reg1, self.channel, reg3,
                      self.crypt >> 8, self.crypt & 0xFF])

    @classmethod
    def from_bytes(cls, regs: bytes) -> "E22Registers":
        if len(regs) != REG_COUNT:
            raise FrameError("bad_register_count", regs)
        addh, addl, netid, reg0, reg1, chan, reg3, ch, cl = regs
        return cls(addh << 8 | addl, netid, UART_BAUDS[reg0 >> 5], PARITIES[reg0 >> 3 & 3], reg0 & 7,
                   SUB_PACKETS[reg1 >> 6], bool(reg1 & 0x20), bool(reg1 & 0x10), POWERS_DBM[reg1 & 3], chan,
                   bool(reg3 & 0x80), bool(reg3 & 0x40), bool(reg3 & 0x20), bool(reg3 & 0x10), bool(reg3 & 0x08),
                   reg3 & 7, ch << 8 | cl)

    def air_rate_in(self, edition: str) -> int | None:
        """bit/s of the air-rate code on firmware of `edition`; None when "auto" cannot tell (codes 000/001)."""
        if edition == "auto":
            return None if self.air_rate_code in AMBIGUOUS_AIR_CODES else AIR_RATES_BPS[self.air_rate_code]
        return AIR_RATES_BY_EDITION[edition][self.air_rate_code]

    @classmethod
    def for_port(cls, port: LoraPort) -> "E22Registers":
        """The registers a module must hold to serve `port` (what an installer writes with the tool).
        The highest code for the rate: 2.4k is 010, which means 2.4k in every edition."""
        code = max(c for c, bps in port.air_rates.items() if bps == port.air_rate_bps)
        return cls(address=port.address, uart_baud=port.baud, air_rate_code=code, sub_packet=port.sub_packet_bytes,
                   channel=port.channel, rssi_byte=port.rssi_byte, fixed_point=port.fixed_point)


def frequency_mhz(channel: int) -> float:
    return round(410.125 + channel, 3)  # E22-400: 410.125 + CH MHz


def parse_answer(data: bytes, start: int = 0, length: int = REG_COUNT) -> bytes | None:
    """The module's answer to a read or write of `length` registers from `start`: the register bytes,
    or None while incomplete. Raises FrameError("bad_format") for FF FF FF and
    FrameError("unexpected_answer") for anything else (an E32 answering an E22 command, line noise)."""
    if data[:3] == BAD_FORMAT[: len(data[:3])]:
        if len(data) >= 3:
            raise FrameError("bad_format", data)
        return None
    head = bytes([READ, start, length])
    if data[:3] != head[: len(data[:3])]:
        raise FrameError("unexpected_answer", data)
    if len(data) < 3 + length:
        return None
    return bytes(data[3: 3 + length])


def mismatches(regs: E22Registers, port: LoraPort) -> list[str]:
    """Every difference that would make the gateway deaf or mute, one clear sentence each."""
    out = []
    if regs.address != port.address:
        out.append(f"address: module {regs.address:#06x}, config {port.address:#06x}")
    if regs.channel != port.channel:
        out.append(f"channel: module {regs.channel} ({frequency_mhz(regs.channel)} MHz), "
                   f"config {port.channel} ({frequency_mhz(port.channel)} MHz)")
    module_bps = regs.air_rate_in(port.e22_edition)
    if module_bps is None:
        out.append(f"air rate: module code {regs.air_rate_code:03b} means 2400 bit/s on 2024-edition firmware but "
                   f"{AIR_RATES_BY_EDITION['2018'][regs.air_rate_code]} bit/s on 2018-edition firmware: set e22_edition "
                   "(\"2024\" or \"2018\") or write code 010")
    elif module_bps != port.air_rate_bps:
        out.append(f"air rate: module {module_bps} bit/s, config {port.air_rate_bps} bit/s")
    if not regs.fixed_point:
        out.append("fixed-point transmission is off in the module (REG3 bit 6); it must be on")
    if regs.rssi_byte != port.rssi_byte:
        out.append(f"RSSI byte: module {'on' if regs.rssi_byte else 'off'}, config {'on' if port.rssi_byte else 'off'} (REG3 bit 7)")
    if regs.uart_baud != port.baud:
        out.append(f"UART baud: module {regs.uart_baud}, config {port.baud}")
    if regs.sub_packet != port.sub_packet_bytes:
        out.append(f"sub-packet: module {regs.sub_packet} bytes, config {port.sub_packet_bytes}")
    return out


def module_answer(command: bytes, regs: E22Registers) -> tuple[bytes, E22Registers]:
    """The module's side of one complete command (simulator): (answer bytes, registers after).

    C1 s n -> C1 s n + registers; C0/C2 s n data -> registers written, answered like a read.
    Registers 07-08 (CRYPT) are write-only and read as 0. Anything else -> FF FF FF.
    """
    if len(command) < 3 or command[0] not in (WRITE_SAVED, READ, WRITE_VOLATILE):
        return BAD_FORMAT, regs
    op, start, n = command[0], command[1], command[2]
    if n == 0 or start + n > REG_COUNT:
        return BAD_FORMAT, regs
    if op == READ:
        if len(command) != 3:
            return BAD_FORMAT, regs
    else:
        if len(command) != 3 + n:
            return BAD_FORMAT, regs
        raw = bytearray(regs.to_bytes())
        raw[start: start + n] = command[3:]
        try:
            regs = E22Registers.from_bytes(bytes(raw))
        except (FrameError, IndexError, ValueError):
            return BAD_FORMAT, regs
    shown = bytearray(dataclasses.replace(regs, crypt=0).to_bytes())
    return bytes([READ, start, n]) + bytes(shown[start: start + n]), regs


def soft_command(data: bytes) -> tuple[int, int] | None:
    """A complete `C0 C1 C2 C3 <a> <b>` normal-mode command -> (a, b), else None (simulator side)."""
    if len(data) == 6 and data[:4] == SOFT_PREFIX:
        return data[4], data[5]
    return None


async def verify(port: LoraPort, answer_timeout_s: float = 1.0) -> E22Registers:
    """Read the module's registers in configuration mode and compare them with `port`.

    Configuration mode by M0/M1 when wired, else by the 2024 firmware's software mode switching when
    `port.software_mode_switch` (REG1 b4 on); RuntimeError when neither (the caller logs that
    verification was skipped). Raises ModuleMismatch with every difference, DeviceTimeout when the
    module does not answer, FrameError on a malformed answer. Leaves the module in normal mode. Used at
    driver start and by `gateway selftest`.
    """
    pins = Pins(port.gpio_root, port.m0_gpio, port.m1_gpio, port.aux_gpio)
    if pins.mode_wired:
        pins.set_mode(Mode.CONFIG)
        try:
            await pins.wait_idle(port.aux_timeout_s)
            raw = await _exchange(port.path, CONFIG_BAUD, [], answer_timeout_s)
        finally:
            pins.set_mode(Mode.NORMAL)
    elif port.software_mode_switch:
        # 2024 manual REG1 b4: the module answers C1 C2 C3 02 <mode>; it stays at its normal UART baud.
        raw = await _exchange(port.path, port.baud, [SOFT_PREFIX + bytes([SOFT_MODE_REG, Mode.CONFIG])], answer_timeout_s,
                              leave=SOFT_PREFIX + bytes([SOFT_MODE_REG, Mode.NORMAL]))
    else:
        raise RuntimeError("verification needs m0_gpio and m1_gpio, or software_mode_switch")
    regs = E22Registers.from_bytes(raw)
    problems = mismatches(regs, port)
    if problems:
        raise ModuleMismatch(port.path, problems)
    await pins.wait_idle(port.aux_timeout_s)
    return regs


async def _exchange(path: str, baud: int, enter: list[bytes], timeout_s: float, leave: bytes = b"") -> bytes:
    """Optional mode-switch commands (each answered C1 C2 C3 ...), then C1 00 09; `leave` switches back."""
    import serial_asyncio_fast  # opened here only; the driver reopens its own port afterwards

    reader, writer = await serial_asyncio_fast.open_serial_connection(url=path, baudrate=baud)
    step = "C1 00 09"
    try:
        async with asyncio.timeout(timeout_s):
            for command in enter:
                step = command.hex(" ").upper()
                writer.write(command)
                want, buf = command[1:], b""
                while len(buf) < len(want):
                    buf += await reader.read(len(want) - len(buf))
                if buf != want:
                    raise FrameError("unexpected_answer", buf)
            step = "C1 00 09"
            writer.write(READ_ALL)
            buf = b""
            while (raw := parse_answer(buf)) is None:
                buf += await reader.read(64)
            if leave:
                step = leave.hex(" ").upper()
                writer.write(leave)
                want, buf = leave[1:], b""
                while len(buf) < len(want):
                    buf += await reader.read(len(want) - len(buf))
        return raw
    except TimeoutError:
        raise DeviceTimeout(f"LoRa module on {path} (no answer to {step})", timeout_s) from None
    finally:
        writer.close()
