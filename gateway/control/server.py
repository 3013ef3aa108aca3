"""Control-socket server inside the daemon: validates each request like any other input, logs the
caller (SO_PEERCRED), and refuses mutating commands to callers that are neither root nor the daemon's uid.

The socket lives in the runtime directory with mode 0660 and the service's group: a process without
that group cannot connect at all (EACCES), which is the first gate.
"""

from __future__ import annotations

import asyncio
import grp
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from gateway.control.protocol import MAX_LINE_BYTES, Request, Response, decode_request, encode
from gateway.errors import CommandRejected, GatewayError

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the connected peer (Linux SO_PEERCRED)."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", data)


class ControlServer:
    def __init__(self, path: str, handlers: dict[str, Handler], mutating: set[str], log: Any, group: str = "") -> None:
        self.path = Path(path)
        self.handlers = handlers
        self.mutating = mutating
        self.log = log.bind(stage="control")
        self.group = group
        self.counters = {"requests": 0, "rejected": 0, "errors": 0}
        self._server: asyncio.AbstractServer | None = None

    async def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.unlink()  # a stale socket from a killed daemon
        except FileNotFoundError:
            pass
        old = os.umask(0o117)  # create the socket 0660 atomically: no window where others could connect
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE_BYTES)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        if self.group:
            os.chown(self.path, -1, grp.getgrnam(self.group).gr_gid)
        self.log.info("control_listening", path=str(self.path))
        try:
            await asyncio.Event().wait()
        finally:
            self._server.close()
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            pid, uid, _gid = peer_credentials(sock)
        except OSError:
            pid, uid = -1, -1
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    self.counters["rejected"] += 1
                    self.log.warning("control_request_rejected", reason="too_long", uid=uid, pid=pid)
                    writer.write(encode(Response(0, False, error="too_long", detail=f"requests are limited to {MAX_LINE_BYTES} bytes")))
                    await writer.drain()
                    return
                if not line:
                    return
                writer.write(encode(await self.handle(line, uid, pid)))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(self, line: bytes, uid: int, pid: int) -> Response:
        self.counters["requests"] += 1
        try:
            req: Request = decode_request(line.strip())
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.counters["rejected"] += 1
            self.log.warning("control_request_rejected", reason="malformed", detail=str(exc)[:200], uid=uid, pid=pid)
            return Response(0, False, error="malformed", detail=str(exc)[:200])
        handler = self.handlers.get(req.cmd)
        if handler is None:
            self.counters["rejected"] += 1
            return Response(req.id, False, error="unknown_command", detail=f"known: {', '.join(sorted(self.handlers))}")
        if req.cmd in self.mutating and uid not in (0, os.getuid()):
            self.counters["rejected"] += 1
            self.log.warning("control_request_rejected", reason="not_permitted", cmd=req.cmd, uid=uid, pid=pid)
            return Response(req.id, False, error="not_permitted", detail="run as root or as the service user")
        if req.cmd in self.mutating:
            self.log.info("control_command", cmd=req.cmd, args=req.args, uid=uid, pid=pid)
        try:
            return Response(req.id, True, result=await handler(req.args))
        except CommandRejected as exc:
            self.counters["rejected"] += 1
            return Response(req.id, False, error=exc.reason, detail=exc.detail)
        except GatewayError as exc:
            self.counters["errors"] += 1
            return Response(req.id, False, error=type(exc).__name__, detail=str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            self.counters["rejected"] += 1
            return Response(req.id, False, error="bad_args", detail=str(exc))
