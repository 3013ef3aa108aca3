"""Typed config of the Modbus drivers: the [ports.X] sections (modbus_rtu, modbus_tcp) and a
profile's [modbus] table (register map, bit flags -> events, outputs for actuators)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway.model import EventKind

Seconds = Annotated[float, Meta(gt=0, le=3600)]
Address = Annotated[int, Meta(ge=0, le=65535)]
Order = Literal["big", "little"]
RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "bits", "bool"]
WIDTH = {"int16": 1, "uint16": 1, "bits": 1, "bool": 1, "int32": 2, "uint32": 2, "float32": 2}

# Which event clears which, when a flag bit drops back to 0.
CLEARS = {EventKind.ALARM: EventKind.ALARM_CLEARED, EventKind.FAULT: EventKind.FAULT_CLEARED}


class _Polling(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # Per-request answer budget. Real slaves answer in 5-50 ms (protocols.md §3.2); 1 s is generous.
    timeout_s: Annotated[float, Meta(gt=0, le=30)] = 1.0
    # Immediate re-sends after a corrupted or mismatched reply (the slave is alive). A silent
    # slave is not re-sent within a poll: each re-send would hold the bus for another timeout.
    retries: Annotated[int, Meta(ge=0, le=5)] = 1
    poll_period_s: Seconds = 5.0
    # A failed slave is next tried after min(poll_period_s * 2**(failures-1), backoff_cap_s).
    backoff_cap_s: Seconds = 60.0
    offline_after: Annotated[int, Meta(ge=1, le=100)] = 3
    # Polls of healthy slaves delayed by a stall (a dead slave's timeout) are caught up, at most
    # this many periods back; older ones are skipped.
    catch_up_periods: Annotated[int, Meta(ge=0, le=10)] = 3
    reopen_cap_s: Seconds = 30.0  # backoff cap for reopening a vanished port / lost connection


class RtuPort(_Polling, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """[ports.X] driver = "modbus_rtu". Use the stable /dev/serial/by-id/... (or by-path for CH340
    adapters, which have no serial number) path, never /dev/ttyUSB0 (it renumbers on replug)."""

    path: Annotated[str, Meta(min_length=1)]
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class TcpPort(_Polling, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """[ports.X] driver = "modbus_tcp": a Modbus TCP device or an RTU-to-TCP gateway."""

    host: Annotated[str, Meta(min_length=1)]
    port: Annotated[int, Meta(ge=1, le=65535)] = 502
    connect_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 3.0


class RegisterSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One field of the register map. `function` 1/2 fields are single bits (type "bool")."""

    name: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
    function: Literal[1, 2, 3, 4]
    address: Address  # protocol address (0-based), not the 4xxxx "register number"
    type: RegisterType = "uint16"
    byte_order: Order | None = None  # None: the profile default
    word_order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    invalid: list[int] = []  # raw values the device sends for "no measurement", e.g. [65535]

    def __post_init__(self) -> None:
        bits = self.function in (1, 2)
        if bits != (self.type == "bool"):
            raise ValueError(f"{self.name}: function {self.function} needs type {'bool' if bits else 'int16/uint16/...'}")
        if self.address + WIDTH[self.type] > 65536:
            raise ValueError(f"{self.name}: {self.type} at {self.address} runs past address 65535")


class FlagSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A bit of a "bits" register (or a bool field) that raises an Event when it becomes 1."""

    source: str  # name of a register field of type bits or bool
    bit: Annotated[int, Meta(ge=0, le=15)] = 0
    kind: EventKind
    code: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
    clear_kind: EventKind | None = None  # default: alarm -> alarm_cleared, fault -> fault_cleared

    @property
    def cleared(self) -> EventKind | None:
        return self.clear_kind or CLEARS.get(self.kind)


class OutputSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A named actuator output: coil (FC 5/15) or holding register(s) (FC 6/16)."""

    function: Literal[5, 6, 15, 16]
    address: Address
    type: RegisterType = "uint16"  # for 6/16; FC 5/15 write one coil
    scale: float = 1.0
    verify: bool = True  # read the value back (FC 1 / FC 3) and compare

    def __post_init__(self) -> None:
        if self.function == 6 and WIDTH[self.type] != 1:
            raise ValueError(f"function 6 writes one register; {self.type} needs function 16")


class ModbusProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A profile's [modbus] table."""

    byte_order: Order = "big"
    word_order: Order = "big"
    max_gap: Annotated[int, Meta(ge=0, le=100)] = 8  # read across up to this many unused addresses
    poll_period_s: Seconds | None = None  # overrides the port's
    registers: list[RegisterSpec]
    flags: list[FlagSpec] = []
    outputs: dict[str, OutputSpec] = {}

    def __post_init__(self) -> None:
        types = {}
        for r in self.registers:
            if r.name in types:
                raise ValueError(f"register name {r.name!r} is used twice")
            types[r.name] = r.type
        for f in self.flags:
            if types.get(f.source) not in ("bits", "bool"):
                raise ValueError(f"flag {f.code!r}: source {f.source!r} is not a bits or bool register")
            if types[f.source] == "bool" and f.bit:
                raise ValueError(f"flag {f.code!r}: a bool source has only bit 0")


def check_rtu_address(address: Any) -> str | None:
    # MSL §2.2: 0 is broadcast, 248-255 reserved; individual slaves are 1..247.
    if isinstance(address, bool) or not isinstance(address, int) or not 1 <= address <= 247:
        return f"{address!r} is not a Modbus slave id (1..247)"
    return None


def check_tcp_address(address: Any) -> str | None:
    # MAP over TCP §4.4.2: the unit id addresses a device behind a gateway; 0 or 255 for the device itself.
    if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= 255:
        return f"{address!r} is not a Modbus TCP unit id (0..255)"
    return None
