"""The shipped units pass `systemd-analyze verify` and the daemon's scores exposure <= 2.5 on
`systemd-analyze security --offline=true` (reliability.md §5: about 1.5-1.6 on systemd 252).
Both run against a staging root holding the unit, the targets it names and its ExecStart path.
A missing systemd-analyze fails these tests: scripts/test.sh installs it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST_UNITS = Path("/usr/lib/systemd/system")
UNITS = {  # unit -> the executables its Exec*= lines name
    "courtyard-gateway.service": ("/opt/courtyard-gateway/launch", "/opt/courtyard-gateway/venv/bin/gateway"),
    "courtyard-gateway-firstboot.service": ("/opt/courtyard-gateway/scripts/firstboot.sh",),
    "courtyard-gateway-update.service": ("/opt/courtyard-gateway/venv/bin/python",),
    "courtyard-gateway-update.path": (),
}


def analyze(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze missing (apt-get install systemd); scripts/test.sh installs it"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def stage(root: Path, with_exec: bool = True) -> Path:
    """A root with our units in /etc/systemd/system, the host's targets and slices, and ExecStart stubs."""
    lib = root / "usr/lib/systemd/system"
    lib.mkdir(parents=True)
    for unit in list(HOST_UNITS.glob("*.target")) + list(HOST_UNITS.glob("*.slice")):
        if unit.exists():  # skip dangling aliases
            shutil.copy(unit, lib / unit.name)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for name, exec_paths in UNITS.items():
        shutil.copy(REPO / "systemd" / name, etc / name)
        for exec_path in exec_paths if with_exec else ():
            stub = root / exec_path.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return root


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_passes_systemd_analyze_verify(tmp_path, unit):
    r = analyze("verify", f"--root={stage(tmp_path)}", "--man=no", unit)
    assert r.returncode == 0 and "courtyard" not in r.stderr, r.stderr


def test_verify_catches_a_missing_execstart_so_the_check_above_means_something(tmp_path):
    r = analyze("verify", f"--root={stage(tmp_path, with_exec=False)}", "--man=no", "courtyard-gateway.service")
    assert r.returncode != 0 and "/opt/courtyard-gateway/launch" in r.stderr


def test_daemon_unit_exposure_is_at_most_2_5(tmp_path):
    r = analyze("security", "--offline=true", f"--root={stage(tmp_path)}", "courtyard-gateway.service")
    m = re.search(r"Overall exposure level for courtyard-gateway\.service: (\d+\.\d)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.5, r.stdout


def settings_of(unit: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / unit).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            settings.setdefault(k, []).append(v)
    return settings


def test_daemon_unit_has_watchdog_restart_forever_and_serial_access_without_private_users():
    settings = settings_of("courtyard-gateway.service")
    assert settings["Type"] == ["notify"] and settings["WatchdogSec"] == ["30s"]
    assert settings["Restart"] == ["always"] and settings["StartLimitIntervalSec"] == ["0"]
    assert settings["SupplementaryGroups"] == ["dialout"]
    # CLARIFICATIONS "Deployment": PrivateUsers/DynamicUser map dialout to nogroup.
    assert "PrivateUsers" not in settings and "DynamicUser" not in settings
    assert {"char-ttyUSB rw", "char-ttyACM rw"} <= set(settings["DeviceAllow"]) and settings["DevicePolicy"] == ["closed"]
    assert settings["CapabilityBoundingSet"] == [""]


def test_the_daemon_cannot_write_the_code_it_runs_and_root_decides_updates():
    """docs/fleet.md "Trust boundaries": /opt/courtyard-gateway is read-only to the daemon
    (ProtectSystem=strict, no ReadWritePaths= naming it); the pending-release decisions at start run
    with full privileges (ExecStartPre=+); the root updater is started by the request file and runs
    the committed release's code, re-verifying with root's release key."""
    daemon = settings_of("courtyard-gateway.service")
    assert daemon["ProtectSystem"] == ["strict"] and daemon["User"] == ["courtyard"]
    assert not any("/opt" in path for paths in daemon.get("ReadWritePaths", []) for path in paths.split())
    assert daemon["ExecStartPre"] == ["+/opt/courtyard-gateway/launch resolve"]
    assert daemon["ExecStart"] == ["/opt/courtyard-gateway/venv/bin/gateway run --config /etc/courtyard-gateway/gateway.toml"]
    assert daemon["NotifyAccess"] == ["main"]
    path = settings_of("courtyard-gateway-update.path")
    assert path["PathChanged"] == ["/var/lib/courtyard-gateway/release/request.json"]
    assert path["Unit"] == ["courtyard-gateway-update.service"]
    root = settings_of("courtyard-gateway-update.service")
    assert "User" not in root and root["Type"] == ["oneshot"]
    (exec_start,) = root["ExecStart"]
    assert exec_start.startswith("/opt/courtyard-gateway/venv/bin/python -m gateway.fleet.updater ")
    assert "--release-pub /etc/courtyard-gateway/release.pub" in exec_start
