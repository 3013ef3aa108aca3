"""Modbus slave simulator (product code): serves profiles' register maps over a pty (RTU, with
optional wire-time emulation) and TCP, with drifting values and per-slave faults.

A pty transfers instantly and pymodbus's server answers unknown ids with exception 4 (a real bus is
silent, protocols.md §3.3), so we own the transport: pymodbus's request PDUs do the Modbus work.
`gateway simulate modbus --profile hydrant_monitor --slave 1 --slave 2 --pty /tmp/ttyMB --baud 9600`
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Unpack

import click
import structlog
from pymodbus.pdu import DecodePDU

from drivers.modbus.framing import MbapFrame, MbapParser, RtuFrame, RtuParser, mbap_adu, rtu_adu
from drivers.modbus.link import char_time_s
from drivers.modbus.simbank import Fault, FaultKnobs, SimContext, SlaveSim, load_profile
from drivers.simport import SimPort, serve_until_interrupted

log = structlog.get_logger("modbus_sim")


class ModbusSimulator:
    """start()/stop(); `slaves[unit]` gives values by field name (`.value`, `.set`, `.output`)."""

    def __init__(self, slaves: list[SlaveSim], baud: int = 0, turnaround_ms: float = 5.0, tick_s: float = 0.5) -> None:
        self.slaves = {s.unit: s for s in slaves}
        self.context = SimContext(self.slaves)
        self.decoder = DecodePDU(True)
        self.baud, self.turnaround_s, self.tick_s = baud, turnaround_ms / 1000, tick_s
        self.requests_seen = 0
        self.log: list[tuple[int, int]] = []  # (unit, function) of every answered request, in order
        self._tasks: set[asyncio.Task[None]] = set()
        self._fd: int | None = None  # RTU: our end of the serial line
        self._port: SimPort | None = None
        self._tcp: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._parser = RtuParser(server=True)

    # -- control API (tests, courtyard simulator) -----------------------------------------------

    def set_fault(self, unit: int, **knobs: Unpack[FaultKnobs]) -> None:
        self.slaves[unit].fault = Fault(**knobs)

    def clear_faults(self) -> None:
        for s in self.slaves.values():
            s.fault = Fault()

    def output(self, unit: int, name: str) -> int | bool:
        """Is the sounder on? `sim.output(9, "sounder")`."""
        return self.slaves[unit].output(name)

    def set_value(self, unit: int, field: str, value: float | int | bool) -> None:
        """E.g. hydrant opened: `sim.set_value(1, "pressure_mpa", 0.08)`."""
        self.slaves[unit].set(field, value)

    def press_button(self, unit: int, field: str = "ack_button", hold_s: float = 2.0) -> None:
        """Hold a discrete input at 1 for hold_s (relay boxes latch a press, see the profile)."""
        s = self.slaves[unit]
        s.set(field, True)
        asyncio.get_running_loop().call_later(hold_s, s.set, field, False)

    def send_raw(self, data: bytes) -> None:
        """RTU: put bytes on the line as they are (bus noise from missing termination/bias)."""
        if self._fd is not None:
            os.write(self._fd, data)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start_rtu(self, path: str, create_pty: bool = False) -> None:
        """Serve RTU on `path`: an existing serial device / socat pty end, or (create_pty) a pty
        we create with `path` as a symlink to its slave end for the gateway to open."""
        self._port = SimPort(path, create_pty)
        self._open_rtu()
        self._spawn(self._drift(), "drift")

    async def start_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._tcp = await asyncio.start_server(self._tcp_client, host, port)
        self._spawn(self._drift(), "drift")
        port_bound: int = self._tcp.sockets[0].getsockname()[1]  # getsockname() is typed Any
        return port_bound

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.close_port()
        for writer in list(self._clients):  # a restarting endpoint drops its connections
            writer.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()

    def close_port(self) -> None:
        """RTU: drop our end. In pty mode the gateway's path vanishes too (a USB unplug)."""
        if self._port is not None:
            self._port.close()
        self._fd = None

    def open_port(self) -> None:
        self._open_rtu()

    # -- RTU -----------------------------------------------------------------------------------

    def _open_rtu(self) -> None:
        assert self._port is not None
        self._fd = self._port.open()
        self._parser.clear()
        asyncio.get_running_loop().add_reader(self._fd, self._rtu_readable)

    def _rtu_readable(self) -> None:
        assert self._port is not None
        data = self._port.read()
        if data is None:
            return
        if not data:  # the other end vanished (socat killed): reopen when the path returns
            self.close_port()
            if self._port is not None and not self._port.create_pty:
                self._spawn(self._reopen(), "reopen")
            return
        for item in self._parser.feed(data):
            if isinstance(item, RtuFrame):
                self._spawn(self._answer_rtu(item, len(item.pdu) + 3), "answer")

    async def _reopen(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            with contextlib.suppress(OSError):
                self._open_rtu()
                return

    async def _answer_rtu(self, frame: RtuFrame, req_len: int) -> None:
        reply = await self._respond(frame.unit, frame.pdu)
        if reply is None:
            return
        unit, pdu, fault = reply
        adu = rtu_adu(unit, pdu)
        if fault.bad_crc:
            adu = adu[:-1] + bytes([adu[-1] ^ 0xFF])
        if fault.truncated:
            adu = adu[: max(1, len(adu) // 2)]
        # A pty has no wire time: emulate the request and reply at the baud rate (protocols.md §3.2).
        delay = self.turnaround_s + fault.late_ms / 1000
        if self.baud:
            delay += (req_len + len(adu)) * char_time_s(self.baud, 10)  # 8N1: 10 bits a character
        await asyncio.sleep(delay)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, adu)

    # -- TCP -----------------------------------------------------------------------------------

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = MbapParser()
        self._clients.add(writer)
        try:
            while data := await reader.read(4096):
                for item in parser.feed(data):
                    if isinstance(item, MbapFrame):
                        self._spawn(self._answer_tcp(item, writer), "answer")
                if parser.broken:
                    break
        except OSError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _answer_tcp(self, frame: MbapFrame, writer: asyncio.StreamWriter) -> None:
        reply = await self._respond(frame.unit, frame.pdu)
        if reply is None:
            return
        unit, pdu, fault = reply
        adu = mbap_adu(frame.tid, unit, pdu)
        if fault.bad_crc:  # TCP has no CRC: corrupt the protocol id instead
            adu = adu[:2] + b"\xff\xff" + adu[4:]
        if fault.truncated:
            adu = adu[: len(adu) // 2]
        await asyncio.sleep(fault.late_ms / 1000)
        if not writer.is_closing():
            writer.write(adu)

    # -- shared --------------------------------------------------------------------------------

    async def _respond(self, unit: int, pdu: bytes) -> tuple[int, bytes, Fault] | None:
        """(unit to answer with, reply PDU, fault) or None to stay silent."""
        slave = self.slaves.get(unit)
        if slave is None or slave.fault.silent:
            return None  # absent ids are silent, as on a real bus
        self.requests_seen += 1
        self.log.append((unit, pdu[0]))
        req = self.decoder.decode(pdu)
        if req is None:
            return unit, bytes([pdu[0] | 0x80, 1]), slave.fault  # illegal function
        slave.requests.append((req.function_code, getattr(req, "address", 0), getattr(req, "count", 0)))
        if slave.fault.exception:
            out = bytes([req.function_code | 0x80, slave.fault.exception])
        else:
            # pymodbus annotates the nominal ModbusServerContext (deprecated, its __init__ logs so) but calls
            # only async_getValues/async_setValues, which SimContext implements with the same signatures.
            resp = await req.datastore_update(self.context, unit)  # type: ignore[arg-type]
            out = bytes([resp.function_code]) + resp.encode()
        return (unit + 1) % 256 if slave.fault.wrong_unit else unit, out, slave.fault

    async def _drift(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            for s in self.slaves.values():
                s.tick(self.tick_s)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"modbus-sim-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def build(profile_path: Path, units: list[int], baud: int = 0) -> ModbusSimulator:
    kind, profile = load_profile(profile_path)
    return ModbusSimulator([SlaveSim(u, kind, profile) for u in units], baud=baud)


@click.command("modbus")
@click.option("--profile", "profile_name", required=True, help="profile name, e.g. hydrant_monitor")
@click.option("--profiles-dir", type=click.Path(file_okay=False), default="config/profiles", show_default=True)
@click.option("--slave", "units", type=click.IntRange(1, 247), multiple=True, required=True, help="unit id (repeatable)")
@click.option("--tcp", "tcp", metavar="HOST:PORT", help="serve Modbus TCP here")
@click.option("--pty", "pty", metavar="LINK", help="create a pty; the gateway opens LINK")
@click.option("--baud", type=int, default=0, help="emulate RS-485 wire time at this baud rate (8N1, pty only)")
@click.option("--turnaround-ms", type=float, default=5.0, show_default=True, help="slave processing time before replying")
def cli(profile_name: str, profiles_dir: str, units: tuple[int, ...], tcp: str | None, pty: str | None, baud: int,
        turnaround_ms: float) -> None:
    """Simulate Modbus slaves serving PROFILE's register map until Ctrl-C."""
    if bool(tcp) == bool(pty):
        raise click.UsageError("give exactly one of --tcp HOST:PORT or --pty LINK")
    try:
        sim = build(Path(profiles_dir) / f"{profile_name}.toml", list(units), baud)
        sim.turnaround_s = turnaround_ms / 1000
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None

    async def start() -> None:
        if tcp:
            host, _, port = tcp.rpartition(":")
            bound = await sim.start_tcp(host or "127.0.0.1", int(port))
            click.echo(f"modbus simulator: {profile_name} units {list(units)} on tcp {host}:{bound}")
        else:
            assert pty is not None  # exactly one of --tcp / --pty, checked above
            await sim.start_rtu(pty, create_pty=True)
            click.echo(f"modbus simulator: {profile_name} units {list(units)} on {pty} (baud emulation {baud or 'off'})")

    serve_until_interrupted(start, sim.stop)
