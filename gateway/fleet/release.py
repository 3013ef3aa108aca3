"""Software release bundles (issue 20 "Software update with rollback"): the Ed25519-signed manifest and
the resumable, rate-limited, hash-checked download. The command and the health report: update.py;
verify again, install, switch and commit as root: updater.py, install.py, launch.py (docs/fleet.md).

The manifest signature covers `cg-release-v1`, version, SHA-256 and size, one per line: a release key
(its public half installed on the gateway) vouches for exactly these bytes, whoever serves them.

Rollback floor: a signed release older (PEP 440) than the one committed or running is refused, so a
replayed manifest of an old release with a known hole cannot take a gateway back to it. Going back on
purpose means re-releasing the older code under a newer version (docs/fleet.md).
"""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from typing import TYPE_CHECKING

import msgspec

from gateway.errors import CommandRejected, GatewayError

if TYPE_CHECKING:  # cryptography is imported when a release is checked, not by `gateway run` (issue 17 RSS)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from packaging.version import Version

    from gateway.fleet.launch import ReleaseSwitch

CHUNK = 64 * 1024
MAX_RELEASE_BYTES = 512 * 1024 * 1024


class ReleaseManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: str
    sha256: str
    size: int
    url: str
    sig: str  # hex Ed25519 signature over signed_bytes(version, sha256, size)


class DownloadError(GatewayError):
    """The release could not be fetched (network, server); resumable: the partial file is kept."""


def release_version(version: str) -> Version:
    """The manifest's version: 1..64 of [A-Za-z0-9.+-_] (it names a venv directory) and PEP 440 (pip
    installs the release as courtyard-gateway==<version>); else CommandRejected("bad_release")."""
    from packaging.version import InvalidVersion, Version

    if not version or len(version) > 64 or not all(c.isalnum() or c in ".+-_" for c in version):
        raise CommandRejected("bad_release", "version must be 1..64 of [A-Za-z0-9.+-_]")
    try:
        return Version(version)
    except InvalidVersion:
        raise CommandRejected("bad_release", f"version {version[:32]} is not a PEP 440 version") from None


def rollback_floor(sw: ReleaseSwitch) -> Version | None:
    """The oldest version an update may install: the newer of the committed release and the running one
    (`venvs/<version>-<hash>`, as install.sh and the updater name them). None when neither parses."""
    from packaging.version import InvalidVersion, Version

    known = []
    for text in (str(sw.state().get("committed_version") or ""), sw.current().removeprefix("venvs/").rpartition("-")[0]):
        try:
            known.append(Version(text))
        except InvalidVersion:
            continue
    return max(known, default=None)


def check_release(m: ReleaseManifest, sw: ReleaseSwitch) -> None:
    """Version well formed and not below the rollback floor; else CommandRejected."""
    version = release_version(m.version)
    floor = rollback_floor(sw)
    if floor is not None and version < floor:
        raise CommandRejected("downgrade_refused", f"release {m.version} is older than {floor}, the rollback floor; "
                                                   "to go back, re-release that code under a newer version")


def signed_bytes(version: str, sha256: str, size: int) -> bytes:
    return f"cg-release-v1\n{version}\n{sha256.lower()}\n{size}".encode()


def sign_release(private_key: Ed25519PrivateKey, version: str, sha256: str, size: int) -> str:
    """For scripts/release.sh (platform side): the manifest's `sig`."""
    return private_key.sign(signed_bytes(version, sha256, size)).hex()


def load_release_key(path: Path) -> Ed25519PublicKey:
    """The release key's public half as scripts/release.sh writes it (PEM SubjectPublicKeyInfo), or
    64 hex digits of the raw key. Raises ValueError for anything else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(data.decode("ascii", "replace").strip()))


def verify_manifest(m: ReleaseManifest, public_key: Ed25519PublicKey) -> None:
    """Raise CommandRejected unless the release key signed this version, hash and size."""
    from cryptography.exceptions import InvalidSignature

    if not 0 < m.size <= MAX_RELEASE_BYTES or len(m.sha256) != 64:
        raise CommandRejected("bad_release", "size or sha256 out of range")
    url = urlsplit(m.url)
    if url.scheme != "https" and not (url.scheme == "http" and url.hostname == "127.0.0.1"):
        raise CommandRejected("bad_release", "release URL must be https (http only on loopback, for tests)")
    try:
        public_key.verify(bytes.fromhex(m.sig), signed_bytes(m.version, m.sha256, m.size))
    except (InvalidSignature, ValueError):
        raise CommandRejected("bad_release_signature", f"release {m.version[:32]} is not signed by the release key") from None


def download(m: ReleaseManifest, dest: Path, rate_bps: float, timeout_s: float = 30.0) -> Path:
    """Fetch m.url into dest (resuming `<dest>.partial` with an HTTP Range request), at most rate_bps
    on average (the uplink is shared with the alarm backlog), then check size and SHA-256. A bad hash
    deletes the partial file and raises CommandRejected("release_hash_mismatch")."""
    partial = dest.with_name(dest.name + ".partial")
    have = partial.stat().st_size if partial.exists() else 0
    if have > m.size:
        partial.unlink()
        have = 0
    if have < m.size:
        req = urllib.request.Request(m.url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp, partial.open("ab") as out:
                if have and resp.status != 206:  # server ignored the Range: start over
                    out.truncate(0)
                    have = 0
                t0, got = time.monotonic(), 0
                while have + got < m.size:
                    block = resp.read(min(CHUNK, m.size - have - got))
                    if not block:
                        break
                    out.write(block)
                    got += len(block)
                    ahead = got / rate_bps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)  # its own thread: the event loop is never blocked
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
            raise DownloadError(f"{m.url}: {exc}"[:200]) from None
    if partial.stat().st_size < m.size:
        raise DownloadError(f"{m.url}: {partial.stat().st_size} of {m.size} bytes (resumable)")
    h = hashlib.sha256()
    with partial.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    if h.hexdigest() != m.sha256.lower():
        partial.unlink()
        raise CommandRejected("release_hash_mismatch", f"release {m.version[:32]}: SHA-256 differs from the signed manifest")
    partial.replace(dest)
    return dest
