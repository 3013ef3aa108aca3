"""Control-socket server inside the daemon: validates each request like any other input, logs the
caller (SO_PEERCRED), and refuses mutating commands to callers that are neither root nor the daemon's uid.

The socket lives in the runtime directory with mode 0660 and the service's group: a process without
that group cannot connect at all (EACCES), which is the first gate.

Resource isolation (issue 15, item 6): at most MAX_CONNECTIONS at once (a further client gets one "busy"
reply and is closed at once, so a local process holding sockets open cannot exhaust the daemon's file
descriptors, which the SMS modem, the uplink and the store need), and a connection idle for IDLE_TIMEOUT_S
is closed. A socket path that still answers is never unlinked: that is a running daemon, not a stale file.
"""

from __future__ import annotations

import asyncio
import grp
import os
import socket
import struct
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from gateway.control.protocol import MAX_LINE_BYTES, Request, Response, decode_request, encode
from gateway.errors import CommandRejected, GatewayError

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

MAX_CONNECTIONS = 32  # the CLI uses one per command; the web panel one or two
SOCKET_MODE = 0o660  # the service's group may connect; nobody else (the first gate)
IDLE_TIMEOUT_S = 60.0  # between requests on one connection (the panel's live view polls every second)


class SocketInUse(GatewayError):
    """The control socket's path answers: another daemon serves it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"{path} is served by a running process; not removing it")


def socket_answers(path: Path) -> bool:
    """True when something accepts connections on the unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def bind_private(path: Path, mode: int, gid: int = -1) -> socket.socket:
    """A unix socket bound at `path` with `mode` (and group `gid`) from the first instant it can be reached.

    Bound inside a fresh 0700 directory beside `path` (the same filesystem), given its mode and group there,
    then renamed into place: nobody can connect before the mode is right, and the process's umask is never
    touched. Setting the umask around the bind did that before, and the umask belongs to the whole process,
    not to one coroutine: every file and directory that another task or thread created meanwhile got it (a
    directory without its owner's x bit), and two servers starting on one loop, each saving the other's
    setting across the bind's await, left 0117 in place for good (20 fleet stand-ins in one test process did;
    every Chromium started from that process afterwards died on its own 0700 check of a mkdtemp directory).
    """
    staging = Path(tempfile.mkdtemp(prefix=".", dir=path.parent))  # ".xxxxxxxx": 12 bytes beside the name
    tmp = staging / "s"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(str(tmp))
        except OSError as e:  # "AF_UNIX path too long" (no errno): say which path, not the staging one
            why = f"cannot bind a unix socket beside {path}: {e.strerror or e}"
            raise (OSError(e.errno, why) if e.errno else OSError(why)) from e
        os.chmod(tmp, mode)
        if gid != -1:
            os.chown(tmp, -1, gid)
        os.replace(tmp, path)
    except BaseException:
        sock.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        staging.rmdir()
    return sock


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
        self.counters = {"requests": 0, "rejected": 0, "errors": 0, "busy": 0, "idle_closed": 0}
        self._server: asyncio.AbstractServer | None = None
        self._open = 0

    async def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and socket_answers(self.path):
            raise SocketInUse(self.path)
        try:
            self.path.unlink()  # a stale socket from a killed daemon: nothing answers on it
        except FileNotFoundError:
            pass
        gid = grp.getgrnam(self.group).gr_gid if self.group else -1
        self._server = await asyncio.start_unix_server(self._serve, sock=bind_private(self.path, SOCKET_MODE, gid),
                                                       limit=MAX_LINE_BYTES)
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
        if self._open >= MAX_CONNECTIONS:
            self.counters["busy"] += 1
            try:
                writer.write(encode(Response(0, False, error="busy", detail=f"{MAX_CONNECTIONS} control connections already open")))
                writer.close()
            except (ConnectionError, RuntimeError):
                pass
            return
        self._open += 1
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_TIMEOUT_S):  # not wait_for: gh-86296 on 3.11
                        line = await reader.readline()
                except TimeoutError:
                    self.counters["idle_closed"] += 1
                    return
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
            self._open -= 1
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
