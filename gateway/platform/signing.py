"""Signed downlink commands, platform side: the canonical form and its HMAC-SHA256 (docs/uplink.md "Commands").

The gateway's verifier (gateway/uplink/commands.py) imports canonical() from here: one definition.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

CANON_TAG = "cg-cmd-v1"


def canonical(cmd_id: str, gateway_id: str, command: str, args: dict[str, Any], issued_at: int, nonce: str, key_id: str) -> bytes:
    """The signed bytes: a JSON array, object keys sorted, no spaces, UTF-8 (not \\u-escaped).

    Equivalent to Python json.dumps([...], sort_keys=True, separators=(",", ":"), ensure_ascii=False).
    """
    doc = [CANON_TAG, cmd_id, gateway_id, command, args, issued_at, nonce, key_id]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sign_command(key_id: str, key_hex: str, gateway_id: str, command: str, args: dict[str, Any] | None = None, *,
                 issued_at: int | None = None, nonce: str | None = None, cmd_id: str | None = None) -> bytes:
    """A signed command payload as the platform publishes it to cg/v1/<gateway_id>/cmd (or .../relay)."""
    args = args or {}
    issued_at = int(time.time()) if issued_at is None else issued_at
    nonce = nonce or secrets.token_hex(12)
    cmd_id = cmd_id or secrets.token_hex(8)
    mac = hmac.new(bytes.fromhex(key_hex), canonical(cmd_id, gateway_id, command, args, issued_at, nonce, key_id), hashlib.sha256)
    doc = {"id": cmd_id, "gateway_id": gateway_id, "command": command, "args": args, "issued_at": issued_at,
           "nonce": nonce, "key_id": key_id, "sig": mac.hexdigest()}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
