"""Bus links: one request at a time over an RS-485 serial port (RTU) or a TCP connection (MBAP).

We own the transaction layer instead of pymodbus's client: it flushes input before each request
and after a timeout, matches every reply by unit id and function code (RTU has no transaction id,
CLARIFICATIONS "Modbus"), counts CRC errors and late replies, and never closes the port because a
slave is silent (pymodbus closes after retries+3 unanswered requests, pymodbus-dev/pymodbus#2269).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from drivers.modbus.config import RtuPort, TcpPort
from drivers.modbus.framing import MbapParser, Request, RtuParser, mbap_adu, parse_reply, rtu_adu
from gateway.clock import Clock
from gateway.errors import DeviceTimeout, FrameError, ModbusDeviceError, TransientError
from gateway.model import Stamp

if TYPE_CHECKING:
    import serial

Count = Callable[[int, str], None]  # (unit, counter name)
Reply = tuple[list[int] | list[bool], Stamp]  # registers or bits (empty for writes), when the reply arrived


class PortLost(TransientError):
    """The serial port vanished (USB unplug) or the TCP connection dropped: close, back off, reopen."""


def char_time_s(baud: int, bits_per_char: int = 11) -> float:
    return bits_per_char / baud


def frame_gap_s(baud: int, bits_per_char: int = 11) -> float:
    # MSL §2.5.1.1: frames are separated by >= 3.5 character times; above 19200 baud a fixed
    # 1.75 ms is recommended (the UART timers cannot resolve shorter gaps reliably).
    return 0.00175 if baud > 19200 else 3.5 * char_time_s(baud, bits_per_char)


class _Link:
    """The shared half: one pending request, a reply future, counters by unit."""

    def __init__(self, clock: Clock, count: Count) -> None:
        self.clock = clock
        self.count = count
        self._pending: Request | None = None
        self._reply: asyncio.Future[Reply] | None = None
        self.opens = 0

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def _deliver(self, unit: int, pdu: bytes) -> None:
        """A valid frame arrived: the answer to the pending request, or a stray one to discard."""
        req, fut = self._pending, self._reply
        if req is None or fut is None or fut.done():
            self.count(unit, "late_discarded")
            return
        if unit != req.unit or (pdu[:1] and pdu[0] & 0x7F != req.function):
            self.count(req.unit, "unexpected_replies")
            return
        stamp = self.clock.now()  # the reading's time is when its response arrived
        try:
            fut.set_result((parse_reply(req, pdu), stamp))
        except (FrameError, ModbusDeviceError) as exc:
            fut.set_exception(exc)

    def _fail(self, exc: Exception) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(exc)

    async def transact(self, req: Request, timeout_s: float) -> Reply:
        """Send one request and wait for its reply. Raises DeviceTimeout, ModbusDeviceError,
        FrameError (corrupted/mismatched reply: the slave is alive) or PortLost."""
        if not self.is_open:
            raise PortLost("port is closed")
        await self._before_send()
        loop = asyncio.get_running_loop()
        self._pending, self._reply = req, loop.create_future()
        try:
            self._send(req)
            async with asyncio.timeout(timeout_s + self._wire_s(req)):  # not wait_for: gh-86296 on 3.11
                return await self._reply
        except TimeoutError:
            self._after_timeout(req)
            raise DeviceTimeout(f"unit {req.unit}", timeout_s) from None
        finally:
            self._pending = self._reply = None

    async def _before_send(self) -> None: ...

    def _send(self, req: Request) -> None:
        raise NotImplementedError

    def _wire_s(self, req: Request) -> float:
        return 0.0

    def _after_timeout(self, req: Request) -> None: ...


class RtuLink(_Link):
    """Modbus RTU over a serial port, read with loop.add_reader (no threads)."""

    def __init__(self, cfg: RtuPort, clock: Clock, count: Count) -> None:
        super().__init__(clock, count)
        self.cfg = cfg
        self._ser: serial.Serial | None = None
        self._parser = RtuParser()
        self._flushed = False  # input flushed since the last read (a stale readable event may then read 0 bytes)
        bits = 1 + cfg.bytesize + (cfg.parity != "N") + cfg.stopbits
        self.char_s = char_time_s(cfg.baud, bits)
        self.gap_s = frame_gap_s(cfg.baud, bits)
        self._idle_at = 0.0  # monotonic time the bus last went quiet

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    async def open(self) -> None:
        import serial  # pyserial: configures termios; we read the fd ourselves

        # Never two opens of one port: a second Serial would fail on our own exclusive lock, and the first
        # (dropped, still locked, its reader still registered) would keep the port locked for ever.
        self.close()
        try:
            ser = serial.Serial(
                self.cfg.path, baudrate=self.cfg.baud, bytesize=self.cfg.bytesize, parity=self.cfg.parity,
                stopbits=self.cfg.stopbits, timeout=0, exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortLost(f"cannot open {self.cfg.path}: {exc}") from None
        self._ser = ser
        self._parser.clear()
        asyncio.get_running_loop().add_reader(ser.fileno(), self._readable)
        self.opens += 1

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is None:
            return
        try:
            asyncio.get_running_loop().remove_reader(ser.fileno())
        except (OSError, ValueError, RuntimeError):
            pass
        try:
            ser.close()
        except OSError:
            pass

    def _lost(self, why: str) -> None:
        self.close()
        self._fail(PortLost(f"{self.cfg.path}: {why}"))

    def _port(self) -> serial.Serial:
        if self._ser is None:
            raise PortLost(f"{self.cfg.path}: not open")
        return self._ser

    def _readable(self) -> None:
        if self._ser is None:  # closed since the loop saw it readable
            return
        try:
            data = os.read(self._ser.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: the pty master / USB adapter is gone (reliability §0.8)
            self._lost(str(exc))
            return
        if not data:
            if self._flushed:  # readable, then tcflush emptied it before this read: not an unplug
                self._flushed = False
                return
            self._lost("end of file")
            return
        self._flushed = False
        self._idle_at = self.clock.monotonic()
        unit = self._pending.unit if self._pending else 0
        for item in self._parser.feed(data):
            if isinstance(item, FrameError):
                self.count(unit, "crc_errors" if item.reason == "bad_crc" else "garbage")
                if item.reason == "bad_crc" and self._pending is not None:
                    self._fail(item)  # the reply is corrupt; no need to wait for the timeout
            else:
                self._deliver(item.unit, item.pdu)

    async def _before_send(self) -> None:
        # Leave the inter-frame silence the slaves need to see a frame boundary.
        wait = self._idle_at + self.gap_s - self.clock.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._flush(0)

    def _flush(self, unit: int) -> None:
        """Discard whatever arrived outside a transaction: a late reply must never be taken as
        the answer to the next request (CLARIFICATIONS "Modbus")."""
        if self._parser.clear():
            self.count(unit, "late_discarded")
        ser = self._port()
        try:
            ser.reset_input_buffer()
            self._flushed = True
        except OSError as exc:
            self._lost(str(exc))
            raise PortLost(f"{self.cfg.path}: {exc}") from None

    def _send(self, req: Request) -> None:
        adu = rtu_adu(req.unit, req.pdu())
        ser = self._port()
        try:
            ser.write(adu)
        except OSError as exc:  # serial.SerialException is an OSError (IOError) subclass
            self._lost(str(exc))
            raise PortLost(f"{self.cfg.path}: write failed: {exc}") from None
        self._idle_at = self.clock.monotonic() + len(adu) * self.char_s

    def _wire_s(self, req: Request) -> float:
        return (len(req.pdu()) + 3 + req.reply_bytes()) * self.char_s

    def _after_timeout(self, req: Request) -> None:
        if self._parser.buf:
            self.count(req.unit, "truncated")
            self._parser.clear()
        if self._ser is not None:
            try:
                self._ser.reset_input_buffer()
            except OSError as exc:
                self._lost(str(exc))


class TcpLink(_Link):
    """Modbus TCP: transaction ids match replies; a silent unit behind a gateway does not close
    the connection, a broken stream does."""

    def __init__(self, cfg: TcpPort, clock: Clock, count: Count) -> None:
        super().__init__(clock, count)
        self.cfg = cfg
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._tid = 0

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def open(self) -> None:
        try:
            async with asyncio.timeout(self.cfg.connect_timeout_s):
                reader, writer = await asyncio.open_connection(self.cfg.host, self.cfg.port)
        except (OSError, TimeoutError) as exc:
            raise PortLost(f"cannot connect to {self.cfg.host}:{self.cfg.port}: {exc or 'timeout'}") from None
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader), name=f"modbus-tcp-read-{self.cfg.host}")
        self.opens += 1

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if self._reader_task is not None and self._reader_task is not asyncio.current_task():
            self._reader_task.cancel()
        self._reader_task = None
        if writer is not None:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = MbapParser()
        why = "connection closed by peer"
        try:
            while data := await reader.read(4096):
                for item in parser.feed(data):
                    if isinstance(item, FrameError):
                        self.count(self._pending.unit if self._pending else 0, "garbage")
                        why = str(item)
                    elif self._pending is not None and item.tid != self._tid:
                        self.count(item.unit, "late_discarded")
                    else:
                        self._deliver(item.unit, item.pdu)
                if parser.broken:
                    break
        except OSError as exc:
            why = str(exc)
        self.close()
        self._fail(PortLost(f"{self.cfg.host}:{self.cfg.port}: {why}"))

    def _send(self, req: Request) -> None:
        self._tid = (self._tid % 0xFFFF) + 1
        if self._writer is None:
            raise PortLost(f"{self.cfg.host}:{self.cfg.port}: not connected")
        try:
            self._writer.write(mbap_adu(self._tid, req.unit, req.pdu()))
        except (OSError, RuntimeError) as exc:
            self.close()
            raise PortLost(f"{self.cfg.host}:{self.cfg.port}: write failed: {exc}") from None
