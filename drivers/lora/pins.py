"""The E22 mode pins (M0, M1) and its AUX line through sysfs GPIO files (`<root>/gpioN/value`).

sysfs keeps this dependency-free and lets the simulator emulate the pins with plain files. On kernels
where sysfs GPIO numbers are offset (Pi 5 / 6.6: base 512+), configure the sysfs number (see README).
"""

from __future__ import annotations

import asyncio
import enum
import time
from pathlib import Path

from gateway.errors import DeviceTimeout


class Mode(enum.IntEnum):
    """E22 M1 M0 (protocols.md §2.1): value = M1 << 1 | M0."""

    NORMAL = 0b00
    WOR = 0b01
    CONFIG = 0b10
    SLEEP = 0b11


# Datasheet: after AUX goes high wait ~2 ms before the mode switch or the next command takes effect.
SETTLE_S = 0.002


class Pins:
    def __init__(self, root: str, m0: int | None, m1: int | None, aux: int | None) -> None:
        self.root = Path(root)
        self.m0, self.m1, self.aux = m0, m1, aux

    @property
    def mode_wired(self) -> bool:
        return self.m0 is not None and self.m1 is not None

    def _value(self, gpio: int, direction: str) -> Path:
        node = self.root / f"gpio{gpio}"
        if not node.exists():  # export once; the kernel creates gpioN/
            (self.root / "export").write_text(str(gpio))
            (node / "direction").write_text(direction)
        return node / "value"

    def set_mode(self, mode: Mode) -> None:
        if self.m0 is None or self.m1 is None:
            raise RuntimeError("M0/M1 are not wired")
        self._value(self.m0, "out").write_text(f"{mode & 1}\n")
        self._value(self.m1, "out").write_text(f"{mode >> 1 & 1}\n")

    def read_mode(self) -> Mode:
        """What the pins say now (the simulator reads this to act as the module)."""
        if self.m0 is None or self.m1 is None:
            raise RuntimeError("M0/M1 are not wired")
        m0 = self._value(self.m0, "out").read_text().strip() == "1"
        m1 = self._value(self.m1, "out").read_text().strip() == "1"
        return Mode(m1 << 1 | m0)

    def aux_idle(self) -> bool:
        """AUX high = idle; no AUX wired counts as idle (we cannot know better)."""
        if self.aux is None:
            return True
        try:
            return self._value(self.aux, "in").read_text().strip() == "1"
        except OSError:
            return True

    def set_aux(self, idle: bool) -> None:
        """Simulator side: drive the AUX file."""
        if self.aux is not None:
            self._value(self.aux, "in").write_text("1\n" if idle else "0\n")

    async def wait_idle(self, timeout_s: float) -> None:
        """Wait for AUX high, then the settle time. Raises DeviceTimeout if the module stays busy."""
        deadline = time.monotonic() + timeout_s
        while not self.aux_idle():
            if time.monotonic() > deadline:
                raise DeviceTimeout("lora module (AUX low)", timeout_s)
            await asyncio.sleep(0.005)
        await asyncio.sleep(SETTLE_S)
