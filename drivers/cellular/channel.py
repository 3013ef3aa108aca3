"""Async AT command channel on a serial port (pyserial-asyncio-fast): one command in flight, per-command
silence timeouts, the `>` prompt for CMGS, URCs and reboot evidence handed to callbacks as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import serial_asyncio_fast
from structlog.typing import FilteringBoundLogger

from drivers.cellular.at import MAX_LINE_CHARS, AtCommand, AtParser, Done, Prompt, Reboot, Urc
from drivers.cellular.commands import Timeouts, command_for
from gateway.errors import DeviceTimeout, ModemUnavailable

# After a timeout the late answer may still be on its way; wait for this much silence (at most
# SETTLE_CAP_S) before the next command so it is not taken as that command's answer.
SETTLE_QUIET_S = 0.1
SETTLE_CAP_S = 1.0
CTRL_Z = b"\x1a"  # 27.005 §3.5.1: ends the PDU after the prompt

_T = TypeVar("_T")


class AtChannel(asyncio.Protocol):
    """`await ch.command("AT+CSQ")` -> info lines; raises ModemError, DeviceTimeout or ModemUnavailable.

    Timeouts are measured from the last byte received, not from the write: a 2,716-char NSORF line
    takes 2.9 s at 9600 baud (protocols.md §1.2) and must not time out while it is still arriving.
    They run on the event loop's monotonic timer, which is what asyncio waits on.
    """

    def __init__(self, log: FilteringBoundLogger, timeouts: Timeouts, on_urc: Callable[[Urc], None], on_reboot: Callable[[str], None],
                 on_lost: Callable[[Exception | None], None] | None = None) -> None:
        self.log = log
        self.timeouts = timeouts
        self.on_urc, self.on_reboot, self.on_lost = on_urc, on_reboot, on_lost
        self.parser = AtParser()
        self.counters: Counter[str] = Counter()
        self._transport: asyncio.Transport | None = None
        self._lock = asyncio.Lock()
        self._done: asyncio.Future[Done] | None = None
        self._prompt: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None  # aclose() waits on it
        self._last_rx = 0.0
        self._dirty = False  # a command timed out: settle before the next one
        self._dirty_at = 0.0  # when it timed out: the quiet period counts from here at the earliest
        self.baud = 9600

    # ---- lifecycle -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def open(self, path: str, baud: int) -> None:
        """Open the serial port; raises ModemUnavailable when it is absent (unplugged, wrong path)."""
        self.baud = baud
        loop = asyncio.get_running_loop()
        try:
            # exclusive: the flock every opener of ours takes (drivers, installer probes), so a probe run
            # beside the daemon is refused instead of stealing half the modem's answers.
            transport, _ = await serial_asyncio_fast.create_serial_connection(loop, lambda: self, path, baudrate=baud, exclusive=True)
        except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
            raise ModemUnavailable(f"cannot open {path}: {exc}") from None
        self._transport = transport  # connection_made runs later (call_soon); commands may start now
        self.parser.abort()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """close() and wait until the port is really closed (the transport closes it a loop turn later):
        its exclusive lock is released, so a probe's next open of the same port succeeds."""
        was_open = self._transport is not None
        self._closed = asyncio.get_running_loop().create_future()
        self.close()
        if was_open:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._closed

    # ---- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._fail(ModemUnavailable(f"serial port lost ({exc or 'closed'})"))
        if self.on_lost is not None:
            self.on_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_rx = asyncio.get_running_loop().time()
        self.counters["bytes_in"] += len(data)
        for item in self.parser.feed(data):
            if isinstance(item, Done):
                self._settle_future(self._done, item)
                # A final result instead of the prompt (AT+CMGS refused: +CMS ERROR: 330, SIM busy, ...)
                # ends the wait for the prompt now, not after the 120 s SMS timeout.
                if self._prompt is not None and not self._prompt.done():
                    self._prompt.set_result(None)
            elif isinstance(item, Prompt):
                if self._prompt is not None and not self._prompt.done():
                    self._prompt.set_result(None)
            elif isinstance(item, Urc):
                self._call(self.on_urc, item)
            elif isinstance(item, Reboot):
                self._call(self.on_reboot, item.line)

    # ---- commands ------------------------------------------------------------------------------

    async def command(self, text: str, timeout_s: float | None = None) -> tuple[str, ...]:
        cmd, default = command_for(text, self.timeouts)
        return await self._run(cmd, timeout_s or default, None)

    async def command_with_payload(self, text: str, payload: bytes, timeout_s: float | None = None) -> tuple[str, ...]:
        """AT+CMGS=<n>: wait for `>`, write payload + Ctrl-Z, wait for the final result."""
        cmd, default = command_for(text, self.timeouts)
        return await self._run(cmd, timeout_s or default, payload)

    async def _run(self, cmd: AtCommand, timeout_s: float, payload: bytes | None) -> tuple[str, ...]:
        async with self._lock:
            if not self.is_open:
                raise ModemUnavailable("serial port is not open")
            if self._dirty:
                await self._settle()
            loop = asyncio.get_running_loop()
            self._done = loop.create_future()
            self._prompt = loop.create_future() if cmd.prompt else None
            self.parser.begin(cmd)
            self.counters["commands"] += 1
            self.log.debug("at_tx", command=cmd.text[:80])
            try:
                self._write(cmd.text.encode("ascii") + b"\r")
                if self._prompt is not None:
                    await self._wait(self._prompt, cmd.text, timeout_s)
                    if not self._done.done():  # prompted; a refused command gets no payload
                        assert payload is not None  # a prompting command (AT+CMGS) is always sent with its payload
                        self._write(payload + CTRL_Z)
                done: Done = await self._wait(self._done, cmd.text, timeout_s)
            finally:
                if self.parser.in_flight is cmd:
                    self.parser.abort()
                self._done = self._prompt = None
            if done.error is not None:
                self.counters["errors"] += 1
                raise done.error
            return done.lines

    async def _wait(self, fut: asyncio.Future[_T], text: str, timeout_s: float) -> _T:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Hard cap: the silence timeout plus the wire time of the longest legal line.
        cap = start + timeout_s + MAX_LINE_CHARS * 10 / self.baud
        while True:
            now = loop.time()
            remaining = min(max(self._last_rx, start) + timeout_s, cap) - now
            if remaining <= 0:
                self.counters["timeouts"] += 1
                self._dirty = True
                self._dirty_at = now
                raise DeviceTimeout(f"modem {text[:40]}", timeout_s)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that lands
            # while the awaited future completes (gh-86296), and the driver then never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    return await asyncio.shield(fut)

    async def _settle(self) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + SETTLE_CAP_S
        # Quiet since the timeout, not merely since the last byte: the line was silent during the timeout,
        # so a late answer that starts just after it would otherwise be read as the next command's answer.
        while loop.time() < end and loop.time() - max(self._last_rx, self._dirty_at) < SETTLE_QUIET_S:
            await asyncio.sleep(SETTLE_QUIET_S / 2)
        self.parser.abort()
        self._dirty = False

    def _write(self, data: bytes) -> None:
        if self._transport is None:
            raise ModemUnavailable("serial port is not open")
        self.counters["bytes_out"] += len(data)
        self._transport.write(data)

    def _settle_future(self, fut: asyncio.Future[Done] | None, item: Done) -> None:
        if fut is not None and not fut.done():
            fut.set_result(item)

    def _fail(self, exc: Exception) -> None:
        for fut in (self._done, self._prompt):
            if fut is not None and not fut.done():
                fut.set_exception(exc)

    def _call(self, fn: Callable[[_T], None], arg: _T) -> None:
        # A handler bug must not kill the reader (nothing is raised out of data_received).
        try:
            fn(arg)
        except Exception:  # noqa: BLE001 - logged and counted; the line discipline goes on
            self.counters["handler_errors"] += 1
            self.log.exception("urc_handler_failed")


def at_counters(ch: AtChannel) -> Counter[str]:
    """The channel's and its parser's counters, prefixed "at_" for health()."""
    return Counter({f"at_{k}": v for k, v in (ch.counters + ch.parser.counters).items()})
