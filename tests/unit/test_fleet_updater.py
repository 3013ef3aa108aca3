"""The root updater trusts nothing the daemon says (issue 20, docs/fleet.md "Trust boundaries"): a request
written by a compromised daemon with a forged signature, a bundle swapped after the daemon's check, or a
path of its choosing is refused, recorded under the request's id, and nothing in the release root
changes; the daemon's update_status then reports the refusal."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.fleet import update, updater
from gateway.fleet.launch import ReleaseSwitch
from gateway.fleet.release import sign_release

BUNDLE = b"not really a tarball, but signed" * 100


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ReleaseSwitch, Path, Ed25519PrivateKey, Path]:
    opt = tmp_path / "opt"
    (opt / "venvs/old").mkdir(parents=True)
    (opt / "venvs/old/.complete").touch()
    os.symlink("venvs/old", opt / "venv")
    key = Ed25519PrivateKey.generate()
    pub = tmp_path / "release.pub"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    state = tmp_path / "state/release"
    state.mkdir(parents=True)
    monkeypatch.setenv("CG_RELEASE_ROOT", str(opt))
    return ReleaseSwitch(opt), state, key, pub


def _request(state: Path, key: Ed25519PrivateKey, data: bytes = BUNDLE, sig: str | None = None, **extra: object) -> dict[str, object]:
    sha = hashlib.sha256(BUNDLE).hexdigest()
    m = {"version": "9.9.9", "sha256": sha, "size": len(BUNDLE), "url": "https://p.example/r.tgz",
         "sig": sig or sign_release(key, "9.9.9", sha, len(BUNDLE))}
    (state / f"courtyard-gateway-9.9.9-{sha[:12]}.tar.gz").write_bytes(data)
    req = {"id": "r1", "manifest": m, "commit_deadline_s": 60, **extra}
    (state / "request.json").write_text(json.dumps(req))
    return req


def _handle(sw: ReleaseSwitch, state: Path, pub: Path) -> str:
    def never() -> None:
        raise AssertionError("restarted")

    return updater.handle(state / "request.json", sw, pub, updater.Hooks(never, lambda: True), poll_s=0.01)


@pytest.mark.parametrize(("case", "error"), [
    ("forged", "not signed by the release key"),        # signed by some other key
    ("swapped", "bundle differs from the signed manifest"),  # bytes changed after the daemon's own check
    ("path", "request"),                                 # a path of the daemon's choosing: not in the contract
])
def test_a_request_the_release_key_did_not_sign_changes_nothing(root: tuple[ReleaseSwitch, Path, Ed25519PrivateKey, Path],
                                                                 case: str, error: str) -> None:
    sw, state, key, pub = root
    if case == "forged":
        _request(state, Ed25519PrivateKey.generate())
    elif case == "swapped":
        _request(state, key, data=BUNDLE[:-1] + b"!")
    else:
        _request(state, key, bundle="/etc/shadow")
    before = sorted(str(p.relative_to(sw.opt)) for p in sw.opt.rglob("*") if not p.name.startswith("release.state"))
    assert _handle(sw, state, pub) == "failed"
    assert not (state / "request.json").exists()  # taken once
    assert sw.current() == "venvs/old" and sw.pending() is None
    after = sorted(str(p.relative_to(sw.opt)) for p in sw.opt.rglob("*") if not p.name.startswith("release.state"))
    assert after in (before, sorted([*before, "incoming"]))  # root's (empty) work directory at most
    st = sw.state()
    assert error in str(st["last_update_error"]) and st["failed_request"] == ("r1" if case != "path" else "")
    assert not list((sw.opt / "venvs").glob("9.9.9*"))


def test_the_daemon_reports_the_root_sides_refusal(root: tuple[ReleaseSwitch, Path, Ed25519PrivateKey, Path]) -> None:
    sw, state, key, pub = root
    _request(state, Ed25519PrivateKey.generate())
    update.PROGRESS.__init__("installing", "9.9.9", len(BUNDLE), "", "", "r1")  # type: ignore[misc]
    try:
        assert update.status_fields()["phase"] == "installing"
        _handle(sw, state, pub)
        st = update.status_fields()
        assert st["phase"] == "failed" and "not signed by the release key" in st["last_update_error"]
    finally:
        update.PROGRESS.__init__()  # type: ignore[misc]


def test_nothing_to_do_without_a_request_or_a_pending_switch(root: tuple[ReleaseSwitch, Path, Ed25519PrivateKey, Path]) -> None:
    sw, state, _, pub = root
    assert _handle(sw, state, pub) == "resolved" and sw.current() == "venvs/old"
