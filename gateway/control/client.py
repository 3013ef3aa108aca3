"""Blocking control-socket client for the CLI."""

from __future__ import annotations

import socket
from typing import Any

import msgspec

from gateway.control.protocol import MAX_LINE_BYTES, Response, encode
from gateway.errors import GatewayError


class DaemonUnavailable(GatewayError):
    """No daemon is listening on the control socket (or we may not connect to it)."""


def call(path: str, cmd: str, args: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Response:
    """Send one request and return the daemon's Response. Raises DaemonUnavailable if nobody answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(path)
            s.sendall(encode({"id": 1, "cmd": cmd, "args": args or {}}))
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > 64 * MAX_LINE_BYTES:
                    raise DaemonUnavailable("reply too large")
    except PermissionError as exc:
        raise DaemonUnavailable(f"permission denied on {path} (are you in the service's group?)") from exc
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise DaemonUnavailable(f"daemon not running (no socket at {path})") from exc
    except (socket.timeout, OSError) as exc:
        raise DaemonUnavailable(f"control socket {path}: {exc}") from exc
    return msgspec.json.decode(buf, type=Response)
