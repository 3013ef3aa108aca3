"""The device side of a simulated serial line, shared by every simulator.

Either a new pty whose far end is symlinked at `path` (the gateway opens `path`, like a
/dev/serial/by-id link), or the device end of an existing socat pair. Closing it with a created
pty also removes the link: the gateway sees exactly a USB-serial unplug (reliability.md §0.8).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Awaitable, Callable
from typing import Any


class SimPort:
    def __init__(self, path: str, create_pty: bool) -> None:
        self.path = path
        self.create_pty = create_pty
        self.fd: int | None = None  # our end: read the gateway's bytes, write the device's answers
        self._keep: int | None = None  # created pty: the far end, held open so reads never see EOF

    def open(self) -> int:
        if self.create_pty:
            master, slave = os.openpty()
            tty.setraw(slave)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.symlink(os.ttyname(slave), self.path)
            self.fd, self._keep = master, slave
        else:
            self.fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        os.set_blocking(self.fd, False)
        return self.fd

    def close(self) -> None:
        # The link goes first: once our fds close, the kernel hands the /dev/pts number to the next
        # openpty (another test, another xdist worker), and a gateway reopening a still-present link
        # would talk to that stranger's simulator.
        if self.create_pty:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        for fd in (self.fd, self._keep):
            if fd is not None:
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    asyncio.get_running_loop().remove_reader(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fd = self._keep = None

    def read(self) -> bytes | None:
        """What the gateway sent: bytes, b"" when the far end is gone (EOF / EIO), None if nothing yet."""
        assert self.fd is not None
        try:
            return os.read(self.fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            return b""


def serve_until_interrupted(start: Callable[[], Awaitable[Any]], stop: Callable[[], Awaitable[Any]]) -> None:
    """A simulator's command-line loop: start, run until Ctrl-C / SIGTERM, stop cleanly."""

    async def main() -> None:
        await start()
        try:
            await asyncio.Event().wait()
        finally:
            await stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
