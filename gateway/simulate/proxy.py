"""A TCP fault proxy for uplink outages: pass, cut (abort both sockets, refuse new ones) or
blackhole (hold sockets, drop bytes: a half-open link). Used by the demo's "uplink outage" scenario
and by the reliability tests; listens on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import enum
from typing import Any


class Mode(enum.StrEnum):
    PASS = "pass"
    CUT = "cut"
    BLACKHOLE = "blackhole"
    MUTE_DOWN = "mute_down"  # upstream bytes pass, downstream ones are dropped: a PUBACK that never returns


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self.mode = Mode.PASS
        self.connections = 0
        self.up_bytes = 0  # gateway -> broker bytes passed: the bench's "bytes on the wire"
        self._server: asyncio.AbstractServer | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        return self.listen_port

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self.listen_port

    async def stop(self) -> None:
        self.set_mode(Mode.CUT)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def set_mode(self, mode: Mode | str) -> None:
        """Takes effect at once; a cut also stops listening, so new connections are refused like a
        broker that is down (a TCP probe must not see it reachable), and PASS listens again."""
        self.mode = Mode(mode)
        if self.mode == Mode.CUT:
            if self._server is not None:
                self._server.close()
                self._server = None
            for a, b in list(self._pairs):
                for w in (a, b):
                    w.transport.abort()  # RST, like a dropped link, not a polite FIN
            self._pairs.clear()
        elif self._server is None:
            t = asyncio.get_running_loop().create_task(self.start())
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        pair = (writer, up_w)
        self._pairs.add(pair)
        for src, dst, up in ((reader, up_w, True), (up_r, writer, False)):
            t = asyncio.create_task(self._pump(src, dst, pair, up))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter], up: bool) -> None:
        try:
            while data := await src.read(65536):
                if self.mode == Mode.PASS or (self.mode == Mode.MUTE_DOWN and up):
                    if up:
                        self.up_bytes += len(data)
                    dst.write(data)
                    await dst.drain()
                # BLACKHOLE (and MUTE_DOWN downstream): read and drop, keep the sockets open.
        except (ConnectionError, OSError):
            pass
        finally:
            self._pairs.discard(pair)
            dst.transport.abort() if self.mode == Mode.CUT else dst.close()
