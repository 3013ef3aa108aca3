"""The `lora_listen` diagnostic (issue 20, docs/fleet.md): for N seconds, every frame the LoRa radios
hear, accepted or rejected, with its source, RSSI/SNR, length and verdict. It taps each radio driver's
receive path (drivers/tap.py) after the frame was handled: it never opens a port a second time and
never delays an alarm. One listen at a time; the report is capped so it fits a command reply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from drivers.base import Heard, RadioTap
from gateway.errors import CommandRejected

SECONDS_RANGE = (1.0, 120.0)
MAX_FRAMES = 200  # listed frames; every frame is still counted in `counts`
MAX_FRAMES_BYTES = 40 * 1024  # their JSON: the reply stays well under the 64 KiB command/reply budget
KEEP_REPORT_S = 600.0  # a finished window's report stays for lora_listen_result this long


class ListenWindow:
    """One window: the observer every tapped driver calls, and what it collected. The observer only
    appends to bounded lists (microseconds per frame) and ignores anything after the window's end."""

    def __init__(self, ports: list[str], seconds: float, now_mono: float, now_wall: float, clock_mono: Callable[[], float]) -> None:
        self.ports, self.seconds = ports, seconds
        self.started_mono, self.started_wall = now_mono, now_wall
        self.ends_mono = now_mono + seconds
        self._mono = clock_mono
        self.frames: list[dict[str, Any]] = []
        self.frames_bytes = 0
        self.counts: dict[str, int] = {}
        self.heard = 0
        self.not_listed = 0
        self.ended = asyncio.Event()
        self.removers: list[Callable[[], None]] = []
        self.end_reason = ""
        self.closed_mono: float | None = None

    def observe(self, heard: Heard) -> None:
        now = self._mono()
        if self.ended.is_set() or now >= self.ends_mono:
            return  # late (the end timer has not run yet): outside the window
        self.heard += 1
        self.counts[heard.verdict] = self.counts.get(heard.verdict, 0) + 1
        if len(self.frames) >= MAX_FRAMES:  # at the cap (a flood): counted, not listed, not even encoded
            self.not_listed += 1
            return
        row = {"t_s": round(now - self.started_mono, 3), **msgspec.structs.asdict(heard)}
        size = len(msgspec.json.encode(row)) + 1
        if self.frames_bytes + size > MAX_FRAMES_BYTES:
            self.not_listed += 1  # at the byte cap: counted, not listed (`truncated`)
            return
        self.frames.append(row)
        self.frames_bytes += size

    def close(self, reason: str = "time_up") -> None:
        """Remove the taps (idempotent). Runs at the window's end by a timer, and again in the waiting
        caller's `finally`: a caller that vanished cannot leave a tap behind."""
        for remove in self.removers:
            remove()
        self.removers.clear()
        if not self.ended.is_set():
            self.end_reason, self.closed_mono = reason, min(self._mono(), self.ends_mono)
            self.ended.set()

    def report(self) -> dict[str, Any]:
        done = self.ended.is_set()
        elapsed = (self.closed_mono if self.closed_mono is not None else min(self._mono(), self.ends_mono)) - self.started_mono
        return {"state": "done" if done else "listening", "end_reason": self.end_reason, "ports": self.ports,
                "seconds": self.seconds, "started_wall_s": self.started_wall, "elapsed_s": round(max(0.0, elapsed), 3),
                "heard": self.heard, "counts": dict(self.counts), "truncated": self.not_listed > 0,
                "not_listed": self.not_listed, "frames": list(self.frames)}


class RadioListen:
    """Owns the one listen window of a daemon; `drivers` returns {port name: driver} and `clock` the
    daemon's clock, both at call time (the daemon builds its drivers after its control API)."""

    def __init__(self, drivers: Callable[[], Mapping[str, Any]], clock: Callable[[], Any]) -> None:
        self.drivers = drivers
        self._clock = clock
        self.window: ListenWindow | None = None

    @property
    def clock(self) -> Any:
        return self._clock()

    def _args(self, args: dict[str, Any]) -> tuple[float, str | None]:
        lo, hi = SECONDS_RANGE
        seconds = args.get("seconds", 30)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not lo <= seconds <= hi:
            raise CommandRejected("bad_args", f"seconds must be a number in {lo:g}..{hi:g}")
        port = args.get("port")
        if port is not None and (not isinstance(port, str) or not port or len(port) > 64):
            raise CommandRejected("bad_args", "port must be a port name of at most 64 characters")
        return float(seconds), port

    def start(self, args: dict[str, Any]) -> ListenWindow:
        seconds, port = self._args(args)
        if self.window is not None and not self.window.ended.is_set():
            left = self.window.ends_mono - self.clock.monotonic()
            raise CommandRejected("busy", f"a listen is running on {', '.join(self.window.ports)} for {max(left, 0):.0f} s more")
        taps = {name: drv for name, drv in self.drivers().items() if isinstance(drv, RadioTap) and (port is None or name == port)}
        if not taps:
            raise CommandRejected("no_radio", f"no running LoRa port{' ' + port if port else ''} on this gateway")
        w = ListenWindow(sorted(taps), seconds, self.clock.monotonic(), self.clock.wall(), self.clock.monotonic)
        try:
            for drv in taps.values():
                w.removers.append(drv.add_observer(w.observe))
        except CommandRejected:
            w.close("refused")
            raise
        asyncio.get_running_loop().call_later(seconds, w.close)
        self.window = w
        return w

    async def listen(self, args: dict[str, Any]) -> dict[str, Any]:
        """Control socket (`gateway lora listen --seconds N`): wait for the window, return its report."""
        w = self.start(args)
        try:
            await w.ended.wait()
        finally:
            w.close("caller_gone")  # cancelled (daemon stopping): the taps still go
        return w.report()

    async def start_remote(self, args: dict[str, Any]) -> dict[str, Any]:
        """Downlink: start and answer at once. The command worker answers one message at a time, so a
        waiting listen would hold a platform `silence` or `ack_alarm` behind it for up to 2 minutes;
        the platform collects the report with `lora_listen_result`."""
        w = self.start(args)
        return {"state": "listening", "ports": w.ports, "seconds": w.seconds, "ends_wall_s": w.started_wall + w.seconds}

    async def result(self, args: dict[str, Any]) -> dict[str, Any]:
        w = self.window
        if w is None or (w.ended.is_set() and self.clock.monotonic() - w.ends_mono > KEEP_REPORT_S):
            raise CommandRejected("no_listen", "no lora_listen window ran in the last 10 minutes")
        return w.report()
