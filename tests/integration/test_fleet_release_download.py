"""Release bundles (issue 20), first half: Ed25519-signed manifest, download from a loopback HTTP
server resumed with Range after a cut, rate-limited, refused when tampered or signed by another key."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import CommandRejected
from gateway.fleet.release import DownloadError, ReleaseManifest, download, sign_release, verify_manifest

BODY = os.urandom(300_000)


class Server:
    def __init__(self) -> None:
        self.body = BODY
        self.cut_after: int | None = None  # close the next response after this many bytes
        self.ranges: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range", "")
                server.ranges.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                data = server.body[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.cut_after is not None:
                    data, server.cut_after = data[:server.cut_after], None
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/release.tar"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _manifest(url: str, key: Ed25519PrivateKey, body: bytes = BODY, version: str = "1.2.0") -> ReleaseManifest:
    digest = hashlib.sha256(body).hexdigest()
    return ReleaseManifest(version, digest, len(body), url, sign_release(key, version, digest, len(body)))


def test_a_cut_download_resumes_with_range_and_is_verified(server: Server, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    m = _manifest(server.url, key)
    verify_manifest(m, key.public_key())
    server.cut_after = 100_000
    with pytest.raises(DownloadError):
        download(m, tmp_path / "r.tar", rate_bps=10e6)
    assert (tmp_path / "r.tar.partial").stat().st_size == 100_000
    t0 = time.monotonic()
    out = download(m, tmp_path / "r.tar", rate_bps=400_000)
    assert out.read_bytes() == BODY and server.ranges[-1] == "bytes=100000-"
    assert time.monotonic() - t0 >= 200_000 / 400_000 * 0.9  # the rate limit held (a lower bound: safe under load)


def test_tampered_release_and_foreign_signature_are_refused(server: Server, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    m = _manifest(server.url, key)
    with pytest.raises(CommandRejected) as exc:
        verify_manifest(m, Ed25519PrivateKey.generate().public_key())
    assert exc.value.reason == "bad_release_signature"
    forged = ReleaseManifest("9.9.9", m.sha256, m.size, m.url, m.sig)  # another version under the same sig
    with pytest.raises(CommandRejected):
        verify_manifest(forged, key.public_key())
    with pytest.raises(CommandRejected):
        verify_manifest(ReleaseManifest(m.version, m.sha256, m.size, "http://example.org/r.tar", m.sig), key.public_key())
    server.body = BODY[:-1] + bytes([BODY[-1] ^ 1])  # the server hands out a tampered file
    with pytest.raises(CommandRejected) as exc:
        download(m, tmp_path / "r.tar", rate_bps=10e6)
    assert exc.value.reason == "release_hash_mismatch"
    assert not (tmp_path / "r.tar").exists() and not (tmp_path / "r.tar.partial").exists()
