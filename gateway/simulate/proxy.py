"""A TCP fault proxy for uplink outages: pass, cut (abort both sockets, refuse new ones) or
blackhole (hold sockets, drop bytes: a half-open link). Used by the demo's "uplink outage" scenario
and by the reliability tests; listens on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import enum


class Mode(enum.StrEnum):
    PASS = "pass"
    CUT = "cut"
    BLACKHOLE = "blackhole"


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self.mode = Mode.PASS
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)
        return self.port

    async def stop(self) -> None:
        self.set_mode(Mode.CUT)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def set_mode(self, mode: Mode | str) -> None:
        self.mode = Mode(mode)
        if self.mode == Mode.CUT:
            for a, b in list(self._pairs):
                for w in (a, b):
                    w.transport.abort()
            self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == Mode.CUT:
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        pair = (writer, up_w)
        self._pairs.add(pair)
        for src, dst in ((reader, up_w), (up_r, writer)):
            t = asyncio.create_task(self._pump(src, dst, pair))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, pair) -> None:
        try:
            while data := await src.read(65536):
                if self.mode == Mode.PASS:
                    dst.write(data)
                    await dst.drain()
                # BLACKHOLE: read and drop, keep the sockets open.
        except (ConnectionError, OSError):
            pass
        finally:
            self._pairs.discard(pair)
            dst.transport.abort() if self.mode == Mode.CUT else dst.close()
