"""Serial links for tests: a pty pair through socat (two linked paths, like a null-modem cable).

Closing the socat process reproduces a USB-serial unplug (reliability §0.8): reads raise
SerialException, writes EIO, the paths vanish until `plug()` starts socat again with the same links.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path


class PtyLink:
    def __init__(self, directory: Path, name: str = "tty") -> None:
        self.a = str(directory / f"{name}-gw")  # the gateway side opens this
        self.b = str(directory / f"{name}-dev")  # the simulator/device side opens this
        self.proc: subprocess.Popen | None = None

    def plug(self) -> "PtyLink":
        socat = shutil.which("socat")
        if socat is None:
            raise RuntimeError("socat is not installed (scripts/test.sh installs it)")
        self.proc = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not (os.path.exists(self.a) and os.path.exists(self.b)):
            if time.monotonic() > deadline:
                raise TimeoutError("socat did not create the pty links")
            time.sleep(0.01)
        return self

    def unplug(self) -> None:
        # Links first, socat second: once socat closes the ptys their /dev/pts numbers go to the next
        # openpty (another xdist worker's), and a gateway reopening a link still present would reach it.
        for p in (self.a, self.b):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None
