"""The control socket's wire format, shared by server and client: one JSON object per line.

Request:  {"id": 7, "cmd": "status", "args": {}}
Response: {"id": 7, "ok": true, "result": {...}}  or  {"id": 7, "ok": false, "error": "unknown_command", "detail": "..."}
"""

from __future__ import annotations

from typing import Any

import msgspec

MAX_LINE_BYTES = 64 * 1024  # a request is a few hundred bytes; anything near this is abuse


class Request(msgspec.Struct, forbid_unknown_fields=True):
    cmd: str
    id: int = 0
    args: dict[str, Any] = {}


class Response(msgspec.Struct, omit_defaults=True):
    id: int
    ok: bool
    result: Any = None
    error: str = ""
    detail: str = ""


_decoder = msgspec.json.Decoder(Request)
_encoder = msgspec.json.Encoder()


def decode_request(line: bytes) -> Request:
    """Raises msgspec.ValidationError / DecodeError on malformed input (the server turns it into a reply)."""
    try:
        return _decoder.decode(line)
    except UnicodeDecodeError as exc:  # msgspec lets invalid UTF-8 inside a JSON string escape as this
        raise msgspec.DecodeError(f"invalid UTF-8: {exc.reason} at byte {exc.start}") from None
    except RecursionError:  # `[[[[...` 5,000 deep used to close the connection without a reply (issue 16)
        raise msgspec.DecodeError("JSON nested too deeply") from None


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj) + b"\n"
