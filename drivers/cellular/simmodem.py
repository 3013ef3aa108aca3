"""The AT half of the modem simulators (product code): a pty, `\\r`-terminated command lines, echo on/off,
answers with the module's exact spacing, the `>` prompt, and the faults every modem can show.

Subclasses (simnbiot.NbiotModemSim, simsms.SmsModemSim) answer commands in `handle(cmd)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from drivers.simport import SimPort

log = structlog.get_logger("cellular_sim")
CRLF = "\r\n"
_T = TypeVar("_T")


@dataclass
class Faults:
    """Knobs a test or the courtyard turns; all off by default."""

    silent: bool = False  # answer nothing (the driver's timeouts)
    reboot_next_command: bool = False  # reboot instead of answering the next command (brown-out mid-command)
    truncate_next: bool = False  # the next answer stops mid-line, without CR LF, then silence
    strict_urc: bool = True  # False: URCs also land inside a response (between info lines and OK)
    garbage_period_s: float = 0.0  # > 0: NUL bytes / UTF-8 garbage / stray lines at random moments
    urc_period_s: float = 0.0  # > 0: harmless URCs (+CSCON, +NPSMR) at random moments
    error_next: str = ""  # answer the next command with this final line, e.g. "+CME ERROR:159"


class AtModemSim:
    """start(path)/stop(); `commands` records every command line received, in order."""

    banner: tuple[str, ...] = ("RDY",)
    urc_noise: tuple[str, ...] = ("+CSCON:1", "+CSCON:0")

    def __init__(self, baud: int = 0, echo: bool = True) -> None:
        self.baud = baud  # > 0: emulate UART wire time (a pty has none), 10 bits a character
        self.echo = echo
        self.power_on_echo = echo
        self.faults = Faults()
        self.commands: list[str] = []
        self.reboots = 0
        self._fd: int | None = None
        self._port: SimPort | None = None
        self._inbuf = bytearray()
        self._payload_for: str | None = None  # the command waiting for its prompt payload
        self._out: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self, path: str, create_pty: bool = True) -> None:
        """Serve on `path`: create a pty and symlink its far end there (the gateway opens `path`), or
        open an existing pty end (socat pair)."""
        self._port = SimPort(path, create_pty)
        self._fd = self._port.open()
        asyncio.get_running_loop().add_reader(self._fd, self._readable)
        self.spawn(self._writer(), "writer")
        self.spawn(self._noise(), "noise")

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._port is not None:
            self._port.close()
        self._fd = None

    def close_port(self) -> None:
        """Drop our end. In pty mode the gateway's path vanishes too (a USB unplug, reliability.md §0.8)."""
        if self._port is not None:
            self._port.close()  # also removes our reader
        self._fd = None
        self._inbuf.clear()
        self._payload_for = None

    def open_port(self) -> None:
        """Plug back in: the same path, a fresh pty; the module keeps its state (only the cable moved)."""
        assert self._port is not None
        self._fd = self._port.open()
        asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def spawn(self, coro: Coroutine[Any, Any, _T], name: str) -> asyncio.Task[_T]:
        task = asyncio.get_running_loop().create_task(coro, name=f"cellular-sim-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- output --------------------------------------------------------------------------------

    def write_raw(self, data: bytes) -> None:
        """Bytes on the line as they are (garbage, NULs, a line without terminator)."""
        self._out.put_nowait(data)

    def urc(self, line: str) -> None:
        self.write_raw((CRLF + line + CRLF).encode())

    def reboot(self, cause: str = "REBOOT_CAUSE_SECURITY_RESET_PIN") -> None:
        """Power cycle: state back to power-on defaults, then the boot banner (protocols.md §1.2)."""
        self.reboots += 1
        self.echo = self.power_on_echo
        self._payload_for = None
        self._inbuf.clear()
        self.reset_state()
        self.write_raw((CRLF + CRLF.join((cause, *self.banner)) + CRLF).encode())

    async def _writer(self) -> None:
        while True:
            data = await self._out.get()
            if self.baud:
                await asyncio.sleep(len(data) * 10 / self.baud)
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.write(self._fd, data)

    async def _noise(self) -> None:
        while True:
            periods = [p for p in (self.faults.garbage_period_s, self.faults.urc_period_s) if p > 0]
            await asyncio.sleep(random.expovariate(1 / min(periods)) if periods else 0.2)
            if self.faults.urc_period_s > 0 and random.random() < 0.5:
                self.urc(random.choice(self.urc_noise))
            elif self.faults.garbage_period_s > 0:
                self.write_raw(random.choice(GARBAGE))

    # ---- input ---------------------------------------------------------------------------------

    def _readable(self) -> None:
        assert self._port is not None
        data = self._port.read()
        if not data:
            return
        self._inbuf += data
        while True:
            if self._payload_for is not None:
                end = next((i for i, b in enumerate(self._inbuf) if b in (0x1A, 0x1B)), -1)
                if end < 0:
                    return
                payload, cancel = bytes(self._inbuf[:end]), self._inbuf[end] == 0x1B
                del self._inbuf[: end + 1]
                cmd, self._payload_for = self._payload_for, None
                if not cancel:
                    self._answer(self.handle_payload(cmd, payload.decode("ascii", "replace")))
                continue
            cut = self._inbuf.find(b"\r")
            if cut < 0:
                return
            raw = bytes(self._inbuf[:cut]).lstrip(b"\n")
            del self._inbuf[: cut + 1]
            self._command(raw.decode("ascii", "replace").strip())

    def _command(self, line: str) -> None:
        if not line:
            return
        self.commands.append(line)
        if self.echo:
            self.write_raw(line.encode() + b"\r")
        f = self.faults
        if f.silent:
            return
        if f.reboot_next_command:
            f.reboot_next_command = False
            self.reboot("REBOOT_CAUSE_UNKNOWN")
            return
        if f.error_next:
            final, f.error_next = f.error_next, ""
            self._answer(([], final))
            return
        upper = line.upper()
        if upper in ("ATE0", "ATE1"):
            self.echo = upper == "ATE1"
            self._answer(([], "OK"))
            return
        self._answer(self.handle(line))

    def prompt(self, command: str) -> tuple[list[str], str]:
        """Answer for a command that takes a payload: the `> ` prompt, then wait for Ctrl-Z."""
        self._payload_for = command
        self.write_raw(b"\r\n> ")
        return [], ""

    def _answer(self, answer: tuple[list[str], str]) -> None:
        lines, final = answer
        if not lines and not final:
            return
        parts = list(lines)
        if not self.faults.strict_urc and parts and random.random() < 0.5:
            parts.insert(random.randint(0, len(parts)), random.choice(self.urc_noise))
        text = "".join(CRLF + p + CRLF for p in parts) + (CRLF + final + CRLF if final else "")
        if self.faults.truncate_next:
            self.faults.truncate_next = False
            text = text[: max(3, len(text.rstrip()) - 4)]
        self.write_raw(text.encode())

    # ---- subclass hooks ------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Power-on state of the module (registration, sockets, SMS mode)."""

    def handle(self, cmd: str) -> tuple[list[str], str]:
        return [], "ERROR"

    def handle_payload(self, cmd: str, payload: str) -> tuple[list[str], str]:
        return [], "ERROR"


GARBAGE = (
    b"\x00\x00\x00",
    "\r\n火警\xff\r\n".encode("utf-8", "replace"),
    b"\xff\xfe\x80\r\n",
    b"\r\r\n",
)
