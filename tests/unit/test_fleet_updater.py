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


def _request(state: Path, key: Ed25519PrivateKey, data: bytes = BUNDLE, sig: str | None = None, version: str = "9.9.9",
             **extra: object) -> dict[str, object]:
    sha = hashlib.sha256(BUNDLE).hexdigest()
    m = {"version": version, "sha256": sha, "size": len(BUNDLE), "url": "https://p.example/r.tgz",
         "sig": sig or sign_release(key, version, sha, len(BUNDLE))}
    (state / f"courtyard-gateway-{version}-{sha[:12]}.tar.gz").write_bytes(data)
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


@pytest.mark.parametrize("floor_from", ["committed", "running"])
def test_a_signed_release_older_than_the_floor_is_refused_and_nothing_changes(
        root: tuple[ReleaseSwitch, Path, Ed25519PrivateKey, Path], floor_from: str) -> None:
    """A replayed manifest of an old release (its signature is genuine) cannot take the gateway back."""
    sw, state, key, pub = root
    if floor_from == "committed":
        sw.record(committed_version="9.10.0")  # PEP 440 order: 9.9.9 < 9.10.0 (not string order)
    else:
        (sw.opt / "venvs/9.10.0-0123456789ab").mkdir()
        (sw.opt / "venvs/old").rename(sw.opt / "venvs/gone")
        os.replace(sw.opt / "venv", sw.opt / "venv.old")
        os.symlink("venvs/9.10.0-0123456789ab", sw.opt / "venv")
    running = sw.current()
    _request(state, key, version="9.9.9")
    assert _handle(sw, state, pub) == "failed"
    assert sw.current() == running and sw.pending() is None
    assert "older than 9.10.0, the rollback floor" in str(sw.state()["last_update_error"])
    assert not list((sw.opt / "venvs").glob("9.9.9*"))


def test_a_newer_release_passes_the_floor_and_a_malformed_version_is_refused(
        root: tuple[ReleaseSwitch, Path, Ed25519PrivateKey, Path]) -> None:
    from gateway.errors import CommandRejected
    from gateway.fleet.release import ReleaseManifest, check_release, rollback_floor

    sw, _, _, _ = root
    assert rollback_floor(sw) is None  # "venvs/old" names no version, nothing committed yet: no floor
    sw.record(committed_version="0.2.0")

    def manifest(version: str) -> ReleaseManifest:
        return ReleaseManifest(version=version, sha256="0" * 64, size=1, url="", sig="")

    check_release(manifest("0.2.0"), sw)  # the same version again (another build) is not a downgrade
    check_release(manifest("0.10.0rc1"), sw)
    for bad, reason in (("0.1.9", "downgrade_refused"), ("latest", "bad_release"), ("../x", "bad_release")):
        with pytest.raises(CommandRejected) as exc:
            check_release(manifest(bad), sw)
        assert exc.value.reason == reason, bad


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
