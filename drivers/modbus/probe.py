"""Installer probes for the CLI, used with the daemon stopped (it owns the port otherwise):
which slave ids answer on a bus, read a few registers, write a coil or register."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from drivers.modbus.config import RtuPort, TcpPort
from drivers.modbus.framing import Request
from drivers.modbus.link import PortLost, RtuLink, TcpLink
from gateway.clock import Clock
from gateway.errors import DeviceTimeout, FrameError, ModbusDeviceError


def _link(path: str, baud: int, parity: str = "N") -> RtuLink | TcpLink:
    """`path` is a serial device, or `tcp://HOST:PORT` for Modbus TCP (a pump station, an RTU-to-TCP gateway)."""
    if path.startswith("tcp://"):
        host, _, port = path.removeprefix("tcp://").rpartition(":")
        return TcpLink(TcpPort(host=host.strip("[]"), port=int(port or 502)), Clock("assume_synced"), lambda unit, name: None)
    # Checked like a [ports.X] section: a baud or parity outside the config's set is refused here, as a
    # port that cannot be opened, instead of reaching pyserial unchecked.
    try:
        cfg = msgspec.convert({"path": path, "baud": baud, "parity": parity}, RtuPort)
    except msgspec.ValidationError as exc:
        raise PortLost(f"cannot open {path}: {exc}") from None
    return RtuLink(cfg, Clock("assume_synced"), lambda unit, name: None)


async def scan(path: str, baud: int, ids: Sequence[int], timeout_s: float,
               progress: Callable[[int, bool], None] | None = None) -> list[int]:
    """Unit ids that answer a one-register FC03 read. An exception reply counts as present (the
    slave is there, it just has nothing at address 0); a corrupted reply counts too (something
    answered: wrong baud/parity or a duplicate id, worth a look). Raises PortLost."""
    link = _link(path, baud)
    await link.open()
    found: list[int] = []
    try:
        for unit in ids:
            try:
                await link.transact(Request(unit, 3, 0, 1), timeout_s)
                present = True
            except (ModbusDeviceError, FrameError):
                present = True
            except DeviceTimeout:
                present = False
            if present:
                found.append(unit)
            if progress is not None:
                progress(unit, present)
    finally:
        link.close()
    return found


async def read(path: str, baud: int, unit: int, function: int, address: int, count: int = 1,
               timeout_s: float = 1.0) -> list[int] | list[bool]:
    """Raw registers or bits. Raises DeviceTimeout, ModbusDeviceError, FrameError, PortLost."""
    link = _link(path, baud)
    await link.open()
    try:
        values, _ = await link.transact(Request(unit, function, address, count), timeout_s)
        return values
    finally:
        link.close()


async def write(path: str, baud: int, unit: int, function: int, address: int, values: Sequence[int],
                timeout_s: float = 1.0) -> None:
    """FC 5/6 write values[0]; FC 15/16 write all. Raises like `read`."""
    count = 1 if function in (5, 6) else len(values)
    link = _link(path, baud)
    await link.open()
    try:
        await link.transact(Request(unit, function, address, count, tuple(values)), timeout_s)
    finally:
        link.close()
