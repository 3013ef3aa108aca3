"""An asyncio TCP proxy on 127.0.0.1 with fault modes, for outage tests (CLARIFICATIONS "Proof suite").

pass: forward both ways. cut: close every connection and refuse new ones (listener closed, so a TCP
probe fails as with a dead broker). blackhole: keep connections, silently drop every byte (half-open link).
mute_down: forward client->upstream, drop upstream->client (the broker got it, the PUBACK is lost).
Counts bytes client->upstream (`up_bytes`), so it also measures bytes on the wire.
"""

from __future__ import annotations

import asyncio

from tests.support.broker import free_port


class FaultProxy:
    def __init__(self, upstream_port: int, port: int | None = None, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self.mode = "pass"
        self.up_bytes = 0
        self.down_bytes = 0
        self.connections = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> "FaultProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        await self.set_mode("cut")

    async def set_mode(self, mode: str) -> None:
        assert mode in ("pass", "cut", "blackhole", "mute_down")
        self.mode = mode
        if mode == "cut":
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            for w in list(self._writers):
                w.transport.abort()  # RST, like a dropped link, not a polite FIN
            self._writers.clear()
        elif self._server is None:
            await self.start()

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            c_writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((c_writer, u_writer))
        await asyncio.gather(self._pipe(c_reader, u_writer, True), self._pipe(u_reader, c_writer, False), return_exceptions=True)
        for w in (c_writer, u_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool) -> None:
        while data := await reader.read(65536):
            if self.mode == "blackhole" or (self.mode == "mute_down" and not up):
                continue
            if up:
                self.up_bytes += len(data)
            else:
                self.down_bytes += len(data)
            writer.write(data)
            await writer.drain()
        writer.transport.abort()
