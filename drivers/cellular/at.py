"""Sans-IO AT line parser: bytes in, responses / URCs / reboot evidence out, one command in flight.

Line discipline from protocols.md §1.3: output lines are `\\r\\n<text>\\r\\n` (we accept any mix of CR,
LF and NUL, so `\\r\\r\\n` is fine), URCs may arrive between the echo and the response, right after OK
and while the host writes; bare lines (NSOCR socket id, CIMI, NSORF payload) are matched by the command
in flight, never by their shape. Nothing is ever raised out of `feed`: bad input is counted and skipped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from gateway.errors import GatewayError, ModemError, ModemUnavailable

# NSORF payload line: "<s>,<ip>,<port>,<len>,<hex>,<remaining>" with 1358 B of data = 2716 hex chars
# (protocols.md §1.2, `PACKET_SIZE_MAX 1358` in mbed); 4096 leaves room for every other line we know.
MAX_LINE_CHARS = 4096

# URC prefixes of the BC95/BC28 NSO dialect, the BC26 QI dialect and the EC200 SMS module (27.005/27.007).
URC_PREFIXES = (
    "+NSONMI", "+NSOCLI", "+NSOSTR", "+CEREG", "+CSCON", "+NNMI", "+QLWEVTIND", "+NPSMR", "+CGEV",
    "+QIURC", "+QIOPEN", "+CMTI", "+CDSI", "+CTZV", "+CTZE", "+CTZEU", "+QIND", "+NITZ", "+QNITZ",
    "+QTTS", "+QTONEDET", "+COLP", "+CLIP",
)
# Call progress result codes (V.250 §6.3.1, 27.007 §6.2): the final answer of ATD when the call fails at
# once, otherwise unsolicited while a voice call is set up or up. Outside ATD they are URCs with the word
# itself as prefix (issue 22; drivers/cellular/voice.py).
CALL_WORDS = ("NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE", "RING")
# Reboot evidence (protocols.md §1.2 "reboot", §1.6): boot banners; +CPIN/+CFUN are evidence only
# when no command asked for them (a powered-up module announces its SIM and radio state).
BANNER_PREFIXES = ("REBOOT_CAUSE_", "Neul", "RDY", "REBOOTING")
READY_PREFIXES = ("+CPIN", "+CFUN")

_FINAL_ERR = re.compile(r"^\+(CME|CMS) ERROR: ?(.*)$")
_PREFIX = re.compile(r"^(\+[A-Z0-9]+):")
_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")


@dataclass(frozen=True)
class AtCommand:
    """What the parser needs to know about the command in flight.

    prefix: info lines of this command start with it ("+CSQ"); bare: it answers with unprefixed lines;
    prompt: it expects the `>` prompt (CMGS); finals: extra words that end it (NRB answers REBOOTING).
    """

    text: str
    prefix: str = ""
    bare: bool = False
    prompt: bool = False
    finals: tuple[str, ...] = ()


@dataclass(frozen=True)
class Done:
    """The command in flight finished: `lines` are its information lines; `error` is set on failure."""

    command: AtCommand
    lines: tuple[str, ...]
    error: GatewayError | None = None


@dataclass(frozen=True)
class Urc:
    prefix: str  # "+NSONMI"; "" for an unknown unprefixed line outside a command
    line: str


@dataclass(frozen=True)
class Reboot:
    line: str  # the evidence, e.g. "REBOOT_CAUSE_SECURITY_RESET_PIN"


@dataclass(frozen=True)
class Prompt:
    """The `> ` prompt of AT+CMGS / AT+QISEND: the host may now write the payload."""


Output = Done | Urc | Reboot | Prompt


def fields(line: str, prefix: str = "") -> list[str]:
    """Values after `prefix:` split at commas; accepts `+CSQ:17,99` (Neul) and `+CSQ: 17,99` (BC26)."""
    if prefix:
        if not line.startswith(prefix + ":"):
            raise ValueError(f"{line!r} does not start with {prefix}:")
        line = line[len(prefix) + 1 :]
    return [f.strip().strip('"') for f in line.strip().split(",")]


@dataclass
class AtParser:
    max_line: int = MAX_LINE_CHARS
    counters: Counter[str] = field(default_factory=Counter)
    _buf: bytearray = field(default_factory=bytearray)
    _cmd: AtCommand | None = None
    _lines: list[str] = field(default_factory=list)
    _skipping: bool = False  # inside an over-long line: drop bytes until its end
    _prompted: bool = False

    @property
    def in_flight(self) -> AtCommand | None:
        return self._cmd

    def begin(self, command: AtCommand) -> None:
        """The host is about to write `command`. One at a time: the channel enforces it."""
        if self._cmd is not None:
            raise RuntimeError(f"{command.text} begun while {self._cmd.text} is in flight")
        self._cmd, self._lines, self._prompted = command, [], False

    def abort(self) -> None:
        """The command timed out: forget it and any half line (a late answer is then counted stray)."""
        if self._buf:
            self.counters["partial_discarded"] += 1
        self._cmd, self._lines = None, []
        self._buf.clear()
        self._skipping = False

    def feed(self, data: bytes) -> list[Output]:
        out: list[Output] = []
        # NUL bytes appear on real UARTs after a modem power-up; they carry nothing.
        self._buf += data.replace(b"\x00", b"")
        while True:
            cut = _line_end(self._buf)
            if cut < 0:
                break
            raw = bytes(self._buf[:cut])
            del self._buf[: cut + 1]
            if self._skipping:
                self._skipping = False
                continue
            if raw:
                self._line(raw, out)
        if len(self._buf) > self.max_line:
            # Beyond any legal line (a 2,716-char NSORF line is fine): reject and skip to its end.
            self.counters["line_too_long"] += 1
            self._buf.clear()
            self._skipping = True
        self._maybe_prompt(out)
        return out

    # ---- internals -----------------------------------------------------------------------------

    def _maybe_prompt(self, out: list[Output]) -> None:
        cmd = self._cmd
        if cmd is None or not cmd.prompt or self._prompted:
            return
        if self._buf.lstrip(b"\r\n").startswith(b">"):
            self._prompted = True
            self._buf.clear()
            out.append(Prompt())

    def _line(self, raw: bytes, out: list[Output]) -> None:
        if len(raw) > self.max_line:
            self.counters["line_too_long"] += 1
            return
        if _NOT_PRINTABLE.search(raw):
            # UTF-8 garbage or line noise: never attribute it to a command.
            self.counters["garbage_lines"] += 1
            return
        line = raw.decode("ascii").strip()
        if not line:
            return
        cmd = self._cmd
        if cmd is not None and line == cmd.text:
            self.counters["echo_lines"] += 1
            return
        if cmd is not None and cmd.prompt and line.startswith(">"):
            return  # a prompt that arrived with a line ending after it
        final = self._final(line, cmd)
        if final is not None:
            if cmd is None:
                self.counters["stray_finals"] += 1  # e.g. the OK after a boot banner, a late answer
                return
            out.append(Done(cmd, tuple(self._lines), final or None))
            self._cmd, self._lines = None, []
            return
        if cmd is not None and cmd.finals and line in cmd.finals:
            out.append(Done(cmd, (*self._lines, line)))
            self._cmd, self._lines = None, []
            return
        if line in CALL_WORDS:
            self.counters["urcs"] += 1
            out.append(Urc(line, line))
            return
        if line.startswith(BANNER_PREFIXES):
            self._reboot(line, out)
            return
        m = _PREFIX.match(line)
        prefix = m.group(1) if m else ""
        if cmd is not None and cmd.prefix and prefix == cmd.prefix and not (self._lines and prefix in URC_PREFIXES):
            self._lines.append(line)  # a second +CEREG inside a CEREG? answer is a URC
            return
        if prefix in READY_PREFIXES:
            self._reboot(line, out)
            return
        if prefix:
            if prefix not in URC_PREFIXES:
                self.counters["unknown_urcs"] += 1
            self.counters["urcs"] += 1
            out.append(Urc(prefix, line))
            return
        if cmd is not None and cmd.bare:
            self._lines.append(line)
            return
        if line.startswith("AT"):
            self.counters["echo_lines"] += 1  # a late echo of a timed-out command
            return
        self.counters["unexpected_lines"] += 1

    def _final(self, line: str, cmd: AtCommand | None) -> GatewayError | Literal[False] | None:
        """False for OK, the error for ERROR / +CME ERROR / +CMS ERROR, None for any other line."""
        text = cmd.text if cmd else "(none)"
        if line == "OK":
            return False
        if line == "ERROR":
            return ModemError(text)
        m = _FINAL_ERR.match(line)
        if m:
            code = m.group(2).strip()
            return ModemError(text, m.group(1), int(code) if code.isdigit() else None)
        return None

    def _reboot(self, line: str, out: list[Output]) -> None:
        self.counters["reboot_evidence"] += 1
        if self._cmd is not None:
            out.append(Done(self._cmd, tuple(self._lines), ModemUnavailable(f"modem rebooted during {self._cmd.text} ({line})")))
            self._cmd, self._lines = None, []
        out.append(Reboot(line))


def _line_end(buf: bytearray) -> int:
    """Index of the first CR or LF, -1 when the buffer holds no complete line."""
    cr, lf = buf.find(b"\r"), buf.find(b"\n")
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)
