"""The panel's gates: guard PIN (scrypt hash from the credentials file), the installer's one-time walk
code, attempt limits per client address, and CSRF tokens for every action (issue 24, "Security")."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~16 MiB, ~50 ms on a Pi 4: slow for guessing, fine for a guard


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    """`scrypt$<salt hex>$<hash hex>`, the form `panel_pin_hash` takes in the credentials file."""
    if not (pin.isdigit() and 4 <= len(pin) <= 12):
        raise ValueError("the PIN must be 4 to 12 digits")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_pin(pin: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
        salt, want = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        return False
    if scheme != "scrypt" or len(pin) > 64:
        return False
    got = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=len(want))
    return hmac.compare_digest(got, want)


def walk_code(key_hex: str, started_wall: float) -> str:
    """The installer's one-time code for the walk test that started at `started_wall`: 8 digits from an
    HMAC under the panel's key, so `gateway panel code` (or `gateway commission walk`) and the panel
    agree without the daemon holding any panel secret. A new walk gives a new code."""
    mac = hmac.new(bytes.fromhex(key_hex), f"walk:{started_wall:.3f}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(mac[:8], 'big') % 10**8:08d}"


@dataclass
class Attempts:
    """Wrong attempts per client address; `max_attempts` wrong ones lock that address for `lockout_s`.
    Bounded: at most `max_clients` addresses are remembered (the oldest forgotten first)."""

    max_attempts: int
    lockout_s: float
    max_clients: int = 1024
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def locked_for(self, addr: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        recent = [t for t in self._failures.get(addr, []) if now - t < self.lockout_s]
        self._failures[addr] = recent
        if len(recent) < self.max_attempts:
            return 0.0
        return round(self.lockout_s - (now - recent[-self.max_attempts]), 1)

    def failed(self, addr: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if addr not in self._failures and len(self._failures) >= self.max_clients:
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(addr, []).append(now)

    def succeeded(self, addr: str) -> None:
        self._failures.pop(addr, None)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
