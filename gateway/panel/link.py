"""The panel's one connection to the daemon's control socket: requests in turn, a timeout on each, and
a fresh connection after any failure. The server closes a connection idle for 60 s and serves at most 32;
the panel polls every poll_period_s on one connection, so it holds one slot and never sits idle."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from gateway.control.protocol import MAX_LINE_BYTES, Response, encode
from gateway.errors import GatewayError

REPLY_LIMIT = 64 * MAX_LINE_BYTES  # as gateway/control/client.py: a devices list of a big courtyard


class LinkDown(GatewayError):
    """The daemon did not answer (not running, socket refused, timeout, connection closed)."""


class ControlLink:
    def __init__(self, path: str, timeout_s: float = 3.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._next_id = 0
        self.reconnects = 0

    async def call(self, cmd: str, args: dict[str, Any] | None = None) -> Response:
        """One request, one reply line. Raises LinkDown; the next call reconnects."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self._roundtrip(cmd, args or {})
            except (OSError, EOFError, TimeoutError, msgspec.DecodeError, ValueError) as exc:
                await self.close()
                raise LinkDown(f"control socket {self.path}: {type(exc).__name__}: {exc}") from None

    async def _roundtrip(self, cmd: str, args: dict[str, Any]) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_unix_connection(self.path, limit=REPLY_LIMIT)
            self.reconnects += 1
        assert self._reader is not None
        self._next_id += 1
        self._writer.write(encode({"id": self._next_id, "cmd": cmd, "args": args}))
        await self._writer.drain()
        line = await self._reader.readline()
        if not line.endswith(b"\n"):
            raise EOFError("connection closed by the daemon")
        return msgspec.json.decode(line, type=Response)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
