"""scripts/install.sh --root and uninstall.sh against a staging root: layout, modes, user, idempotency,
upgrade in place (new venv, config and outbox untouched), uninstall keeping data unless --purge.

The release under test is built like a real one (sources + wheels/ with a PEP 427 wheel of the
project) so install.sh takes its offline path; dependencies are not in that wheelhouse, so pip runs
with PIP_NO_DEPS=1: these tests check the layout, not PyPI.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from gateway.config import load_credentials

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ["pyproject.toml", "README.md", "gateway", "drivers", "config", "systemd", "scripts", "docs"]
pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]  # each test over 5 s (a real install)


def _wheel(src: Path, out: Path, version: str) -> Path:
    """A py3-none-any wheel of gateway/ + drivers/ (PEP 427), so pip installs offline with no build step."""
    dist = f"courtyard_gateway-{version}.dist-info"
    files: dict[str, bytes] = {}
    for pkg in ("gateway", "drivers"):
        for f in sorted((src / pkg).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix in (".py", ".sql", ".json"):
                files[str(f.relative_to(src))] = f.read_bytes()
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: courtyard-gateway\nVersion: {version}\n".encode()
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{dist}/entry_points.txt"] = b"[console_scripts]\ngateway = gateway.cli.main:cli\n"
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = out / f"courtyard_gateway-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def make_release(tmp: Path, version: str = "0.1.0", patch: str = "") -> Path:
    """courtyard-gateway-<version>.tar.gz as a release would ship it. `patch` adds a line to the code."""
    top = tmp / f"courtyard-gateway-{version}"
    top.mkdir(parents=True)
    for item in SHIPPED:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, top / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, top / item)
    init = top / "gateway/__init__.py"
    text = init.read_text().replace('__version__ = "0.1.0"', f'__version__ = "{version}"')
    init.write_text(text + patch)
    (top / "wheels").mkdir()
    _wheel(top, top / "wheels", version)
    tarball = tmp / f"courtyard-gateway-{version}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    return tarball


def install(root: Path, release: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_NO_DEPS": "1", "PYTHON": sys.executable}
    r = subprocess.run(
        ["bash", str(REPO / "scripts/install.sh"), "--root", str(root), "--from-release", str(release), *extra],
        capture_output=True, text=True, env=env, timeout=150,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path's content hash, mtime, mode and owner (symlinks by target): what a no-op must keep."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                key = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                key = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns)
            else:
                key = ("dir",)
            out[str(p.relative_to(root))] = (*key, st.st_mode, st.st_uid, st.st_gid)
    return out


def user_ids(root: Path, name: str = "courtyard") -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == name:
            return int(f[2]), int(f[3])
    raise AssertionError(f"no {name} in {root}/etc/passwd")


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    release = make_release(tmp / "rel")
    root = tmp / "root"
    pub = tmp / "release.pub"
    pub.write_text("11" * 32 + "\n")  # the release key's public half (raw hex form)
    result = install(root, release, "--release-pub", str(pub))
    return root, release, result


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_install_creates_the_user_in_dialout_with_nologin(staged):
    root, _, _ = staged
    entry = next(line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("courtyard:"))
    _, _, uid, gid, _, home, shell = entry.split(":")
    assert int(uid) < 1000 and home == "/var/lib/courtyard-gateway" and shell == "/usr/sbin/nologin"
    groups = {line.split(":")[0]: line.split(":") for line in (root / "etc/group").read_text().splitlines()}
    assert "courtyard" in groups["dialout"][3].split(",")
    assert groups["courtyard"][2] == gid


def test_install_lays_out_units_rules_and_dropins_with_their_modes(staged):
    root, _, _ = staged
    expected = {
        "etc/systemd/system/courtyard-gateway.service": "systemd/courtyard-gateway.service",
        "etc/systemd/system/courtyard-gateway-firstboot.service": "systemd/courtyard-gateway-firstboot.service",
        "etc/systemd/system/courtyard-panel.service": "systemd/courtyard-panel.service",
        "etc/polkit-1/rules.d/50-courtyard-gateway-poweroff.rules": "systemd/50-courtyard-gateway-poweroff.rules",
        "etc/udev/rules.d/99-courtyard-gateway.rules": "systemd/99-courtyard-gateway.rules",
        "etc/systemd/journald.conf.d/courtyard.conf": "systemd/journald-courtyard.conf",
        "opt/courtyard-gateway/scripts/firstboot.sh": "scripts/firstboot.sh",
        "opt/courtyard-gateway/scripts/uninstall.sh": "scripts/uninstall.sh",
        "opt/courtyard-gateway/docs/INSTALL.md": "docs/INSTALL.md",
    }
    for staged_path, repo_path in expected.items():
        p = root / staged_path
        assert p.read_bytes() == (REPO / repo_path).read_bytes(), staged_path
        assert (p.stat().st_uid, p.stat().st_gid) == (0, 0), staged_path
    assert mode(root / "etc/systemd/system/courtyard-gateway.service") == 0o644
    assert mode(root / "opt/courtyard-gateway/scripts/firstboot.sh") == 0o755
    assert "RuntimeWatchdogSec=10s" in (root / "etc/systemd/system.conf.d/courtyard-watchdog.conf").read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "courtyard-gateway.service").is_symlink() and (wants / "courtyard-gateway-firstboot.service").is_symlink()
    assert not (wants / "courtyard-panel.service").exists()  # enabled by hand once [panel] and a PIN are set


def test_install_creates_config_dir_readable_by_the_service_and_a_0600_credentials_file(staged):
    root, _, _ = staged
    uid, gid = user_ids(root)
    etc = root / "etc/courtyard-gateway"
    assert (mode(etc), etc.stat().st_uid, etc.stat().st_gid) == (0o750, 0, gid)
    cfg = etc / "gateway.toml"
    assert cfg.read_bytes() == (REPO / "config/gateway.example.toml").read_bytes()
    assert (mode(cfg), cfg.stat().st_uid, cfg.stat().st_gid) == (0o640, 0, gid)
    creds = etc / "credentials.toml"
    assert (mode(creds), creds.stat().st_uid, creds.stat().st_gid) == (0o600, uid, gid)
    assert load_credentials(creds).mqtt_password == ""  # the daemon's own loader accepts it
    for profile in (REPO / "config/profiles").glob("*.toml"):
        assert (etc / "profiles" / profile.name).read_bytes() == profile.read_bytes()
    state = root / "var/lib/courtyard-gateway"
    assert (mode(state), state.stat().st_uid, state.stat().st_gid) == (0o750, uid, gid)


def test_install_builds_a_venv_per_release_and_points_the_unit_path_at_it(staged):
    root, _, _ = staged
    opt = root / "opt/courtyard-gateway"
    link = os.readlink(opt / "venv")
    assert link.startswith("venvs/0.1.0-")
    gateway = opt / "venv/bin/gateway"
    assert os.access(gateway, os.X_OK)
    assert os.readlink(root / "usr/local/bin/gateway") == "/opt/courtyard-gateway/venv/bin/gateway"
    # The unit's ExecStartPre=+ runs the release resolver (outside the venvs), as root.
    assert mode(opt / "launch") == 0o755 and (opt / "launch").read_bytes() == (REPO / "gateway/fleet/launch.py").read_bytes()
    # The code is root's: the service can neither add venvs nor switch the link (the root updater does).
    assert (mode(opt), opt.stat().st_uid, opt.stat().st_gid) == (0o755, 0, 0)
    assert (opt / "venv").lstat().st_uid == 0  # a link's own mode is always 0777
    assert all(p.stat().st_uid == 0 and not p.stat().st_mode & 0o022 for p in (opt, opt / "venvs", opt / link, opt / link / "bin"))
    uid, gid = user_ids(root)
    rel_dir = root / "var/lib/courtyard-gateway/release"  # the daemon's downloads and requests
    assert (mode(rel_dir), rel_dir.stat().st_uid, rel_dir.stat().st_gid) == (0o750, uid, gid)
    for unit in ("courtyard-gateway-update.service", "courtyard-gateway-update.path"):
        assert (root / "etc/systemd/system" / unit).read_bytes() == (REPO / "systemd" / unit).read_bytes()
    assert (root / "etc/systemd/system/multi-user.target.wants/courtyard-gateway-update.path").is_symlink()
    assert (root / "etc/courtyard-gateway/release.pub").read_text() == "11" * 32 + "\n"
    assert (opt / "release").read_text().startswith("version=0.1.0\n")
    # The installed code is the release's: the venv imports gateway from its own site-packages.
    out = subprocess.run([str(opt / "venv/bin/python"), "-I", "-c", "import gateway; print(gateway.__file__)"], capture_output=True, text=True, check=True)
    assert os.path.realpath(out.stdout.strip()).startswith(str(opt / link) + "/")


def test_reinstall_of_the_same_release_changes_nothing(staged):
    root, release, _ = staged
    before = snapshot(root)
    second = install(root, release)
    after = snapshot(root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and not k.endswith(".pwd.lock"))
    assert changed == []
    assert "installed" not in second.stdout and "building venv" not in second.stdout


def test_upgrade_switches_venv_keeps_previous_and_the_admins_files_and_never_touches_config_or_outbox(staged, tmp_path):
    """One upgrade (each builds a venv, ~20 s) checks both halves: the release switch, and the files the
    admin owns (an edited udev rule stays; a shipped profile changed by the release arrives as .dist)."""
    root0, release, _ = staged
    root = tmp_path / "root"
    shutil.copytree(root0, root, symlinks=True)
    old_link = os.readlink(root / "opt/courtyard-gateway/venv")
    cfg = root / "etc/courtyard-gateway/gateway.toml"
    cfg.write_text(cfg.read_text().replace('courtyard = "3号院"', 'courtyard = "7号院"'))
    outbox = root / "var/lib/courtyard-gateway/outbox.db"
    outbox.write_bytes(b"SQLite format 3\0" + os.urandom(4096))
    kept = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (cfg, outbox)}
    rules = root / "etc/udev/rules.d/99-courtyard-gateway.rules"
    rules.write_text(rules.read_text() + 'SUBSYSTEMS=="usb", ATTRS{serial}=="SITE1", SYMLINK+="courtyard-rs485"\n')
    edited = rules.read_bytes()

    # An install from before the root updater: $OPT sticky and group-writable, venvs and link the service's.
    uid, gid = user_ids(root)
    opt = root / "opt/courtyard-gateway"
    os.chown(opt, 0, gid)
    opt.chmod(0o1775)
    for p in (opt / "venvs", opt / old_link, opt / old_link / "bin/gateway"):
        os.chown(p, uid, gid)
    os.chown(opt / "venv", uid, gid, follow_symlinks=False)

    newer = make_release(tmp_path / "rel", version="0.1.1", patch="\n# 0.1.1\n")
    top = tmp_path / "rel/courtyard-gateway-0.1.1"
    (top / "config/profiles/pump_station.toml").write_text((top / "config/profiles/pump_station.toml").read_text() + "\n# new\n")
    with tarfile.open(newer, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    r = install(root, newer)
    assert (mode(opt), opt.stat().st_uid, opt.stat().st_gid) == (0o755, 0, 0) and "took /opt/courtyard-gateway back" in r.stdout
    assert not [p for p in opt.rglob("*") if p.lstat().st_uid != 0 or (p.lstat().st_mode & 0o022 and not p.is_symlink())]
    new_link = os.readlink(root / "opt/courtyard-gateway/venv")
    assert new_link.startswith("venvs/0.1.1-") and new_link != old_link
    assert (root / "opt/courtyard-gateway" / old_link / ".complete").exists(), "previous release kept for rollback"
    assert "active release: 0.1.1" in r.stdout
    for p, (data, mtime) in kept.items():
        assert (p.read_bytes(), p.stat().st_mtime_ns) == (data, mtime), p
    assert rules.read_bytes() == edited
    profile = root / "etc/courtyard-gateway/profiles/pump_station.toml"
    assert profile.read_bytes() == (REPO / "config/profiles/pump_station.toml").read_bytes()
    assert (profile.parent / "pump_station.toml.dist").read_text().endswith("# new\n")


def test_uninstall_keeps_config_data_and_user_and_purge_removes_them(staged, tmp_path):
    root0, _, _ = staged
    root = tmp_path / "root"
    shutil.copytree(root0, root, symlinks=True)
    (root / "var/lib/courtyard-gateway/outbox.db").write_bytes(b"x")
    run = lambda *a: subprocess.run(["bash", str(REPO / "scripts/uninstall.sh"), "--root", str(root), *a], capture_output=True, text=True, check=True)  # noqa: E731
    run()
    assert not (root / "opt/courtyard-gateway").exists() and not (root / "usr/local/bin/gateway").is_symlink()
    assert not (root / "etc/systemd/system/courtyard-gateway.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/courtyard-gateway.service").exists()
    assert (root / "etc/courtyard-gateway/credentials.toml").exists()
    assert (root / "var/lib/courtyard-gateway/outbox.db").exists()
    assert user_ids(root)
    run("--purge")
    assert not (root / "etc/courtyard-gateway").exists() and not (root / "var/lib/courtyard-gateway").exists()
    assert "courtyard:" not in (root / "etc/passwd").read_text()
    dialout = next(line for line in (root / "etc/group").read_text().splitlines() if line.startswith("dialout:"))
    assert "courtyard" not in dialout
