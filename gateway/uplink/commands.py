"""Downlink commands: HMAC-SHA256 verification, the persisted nonce cache, and signing for the platform.

The broker ACL is the first gate, this signature the second (reliability §5). Canonical form and the
reasons a command is rejected are in docs/uplink.md "Commands"; nothing rejected is ever executed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from typing import Any

import msgspec

from gateway.errors import CommandRejected
from gateway.platform.signing import CANON_TAG, canonical, sign_command  # noqa: F401 - one definition, re-exported

MAX_COMMAND_BYTES = 64 * 1024
_NONCE_MAX_CHARS = 64
_ID_MAX_CHARS = 128
_ARGS_MAX_DEPTH = 16  # real commands nest 1-2 levels; deeper is refused before any recursive walk (issue 16)
_SIG_HEX = frozenset("0123456789abcdefABCDEF")


def _no_constants(name: str) -> float:
    # json.loads accepts NaN/Infinity by default; they have no canonical form and msgspec refuses them.
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of decoded JSON, iteratively (no recursion), stopping past `limit`."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            break
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
    return deepest


class SignedCommand(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    gateway_id: str
    command: str
    args: dict[str, Any]
    issued_at: int  # Unix seconds, integer: no float formatting in the canonical form
    nonce: str
    key_id: str
    sig: str  # hex HMAC-SHA256 over canonical(...)


def peek_id(payload: bytes) -> tuple[str, str]:
    """(id, command) of a payload for the reply, best effort; ("", "") if it does not say."""
    try:
        doc = json.loads(payload) if len(payload) <= MAX_COMMAND_BYTES else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "", ""
    if not isinstance(doc, dict):
        return "", ""
    cmd_id, command = doc.get("id", ""), doc.get("command", "")
    return (cmd_id[:_ID_MAX_CHARS] if isinstance(cmd_id, str) else ""), (command[:64] if isinstance(command, str) else "")


class Verifier:
    """Checks a command's bytes in a fixed order and returns it, or raises CommandRejected(reason).

    Order: size, JSON shape, signature present, key known, signature, gateway id, clock, window, nonce.
    The nonce is remembered only for a command that passed every other check (NonceCache.claim).
    """

    def __init__(self, gateway_id: str, command_keys: dict[str, str], window_s: float, clock: Any) -> None:
        self.gateway_id = gateway_id
        self.set_keys(command_keys)
        self.window_s = window_s
        self.clock = clock
        self._decoder = msgspec.json.Decoder(SignedCommand)

    def set_keys(self, command_keys: dict[str, str]) -> None:
        self._keys = {kid: bytes.fromhex(k) for kid, k in command_keys.items()}

    def verify(self, payload: bytes) -> SignedCommand:
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandRejected("oversized", f"{len(payload)} bytes > {MAX_COMMAND_BYTES}")
        try:
            raw = json.loads(payload, parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise CommandRejected("malformed", f"not JSON: {str(exc)[:80]}") from None
        if not isinstance(raw, dict):
            raise CommandRejected("malformed", "not a JSON object")
        if not raw.get("sig"):
            raise CommandRejected("unsigned", "no sig field")
        if _depth(raw, _ARGS_MAX_DEPTH + 1) > _ARGS_MAX_DEPTH + 1:
            raise CommandRejected("malformed", f"nested deeper than {_ARGS_MAX_DEPTH} levels")
        sig = raw["sig"]
        if not isinstance(sig, str) or len(sig) != 64 or not _SIG_HEX.issuperset(sig):
            # hmac.compare_digest raises TypeError on non-ASCII str: check the shape first (issue 16).
            raise CommandRejected("malformed", "sig is not 64 hex digits")
        try:
            cmd = self._decoder.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise CommandRejected("malformed", str(exc)[:120]) from None
        if len(cmd.nonce) > _NONCE_MAX_CHARS or len(cmd.id) > _ID_MAX_CHARS or not cmd.nonce:
            raise CommandRejected("malformed", "id or nonce too long, or nonce empty")
        key = self._keys.get(cmd.key_id)
        if key is None:
            raise CommandRejected("unknown_key", f"key_id {cmd.key_id[:32]!r} is not configured")
        try:
            body = canonical(cmd.id, cmd.gateway_id, cmd.command, cmd.args, cmd.issued_at, cmd.nonce, cmd.key_id)
        except (ValueError, RecursionError):
            raise CommandRejected("malformed", "args cannot be canonicalised") from None
        expected = hmac.new(key, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, cmd.sig.lower()):  # constant time (Python hmac docs)
            raise CommandRejected("bad_signature", f"key_id {cmd.key_id}")
        if cmd.gateway_id != self.gateway_id:
            raise CommandRejected("wrong_gateway", f"addressed to {cmd.gateway_id[:48]!r}")
        if not self.clock.synced():
            # The window means nothing on an unsynchronised clock (reliability §5): refuse, say why.
            raise CommandRejected("clock_unsynced", "gateway clock not synchronised; cannot check issued_at")
        age = self.clock.wall() - cmd.issued_at
        if age > self.window_s:
            raise CommandRejected("stale", f"issued {age:.0f} s ago > {self.window_s:g} s")
        if age < -self.window_s:
            raise CommandRejected("future", f"issued {-age:.0f} s in the future")
        return cmd


class NonceCache:
    """Nonces seen within the window, persisted (table uplink_nonce, migration 0020) so a replay
    after a restart still fails. Runs inside Outbox.transact (the store's writer thread)."""

    def __init__(self, outbox: Any, window_s: float) -> None:
        self.outbox = outbox
        self.keep_s = 2 * window_s  # > window on both sides of issued_at

    async def claim(self, cmd: SignedCommand, now_wall: float) -> None:
        """Remember the nonce, or raise CommandRejected("replayed") if it was already used."""

        def txn(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM uplink_nonce WHERE seen_wall_s < ?", (now_wall - self.keep_s,))
            cur = conn.execute("INSERT OR IGNORE INTO uplink_nonce (key_id, nonce, issued_at, seen_wall_s) VALUES (?, ?, ?, ?)",
                               (cmd.key_id, cmd.nonce, cmd.issued_at, now_wall))
            return cur.rowcount == 1

        if not await self.outbox.transact(txn, durable=True):
            raise CommandRejected("replayed", f"nonce {cmd.nonce[:16]} already used")
