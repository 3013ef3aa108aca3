"""systemd/courtyard-panel.service (issue 24): verifies, is sandboxed at least as tightly as the daemon's
unit, runs as the daemon's user (the control socket takes acknowledge only from it) and yields to the
alarm path (priority and memory caps)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.integration.test_deploy_systemd import HOST_UNITS, REPO, analyze

UNIT = "courtyard-panel.service"


def stage(root: Path) -> Path:
    lib = root / "usr/lib/systemd/system"
    lib.mkdir(parents=True)
    for unit in list(HOST_UNITS.glob("*.target")) + list(HOST_UNITS.glob("*.slice")):
        if unit.exists():
            shutil.copy(unit, lib / unit.name)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for name in (UNIT, "courtyard-gateway.service"):
        shutil.copy(REPO / "systemd" / name, etc / name)
    for exe in ("opt/courtyard-gateway/venv/bin/gateway", "opt/courtyard-gateway/launch"):  # the two ExecStart paths
        stub = root / exe
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def settings(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def test_panel_unit_verifies_and_scores_at_most_2_0(tmp_path: Path) -> None:
    root = stage(tmp_path)
    r = analyze("verify", f"--root={root}", "--man=no", UNIT)
    assert r.returncode == 0 and "courtyard" not in r.stderr, r.stderr
    r = analyze("security", "--offline=true", f"--root={root}", UNIT)
    m = re.search(r"Overall exposure level for courtyard-panel\.service: (\d+\.\d)", r.stdout)
    assert m and float(m.group(1)) <= 2.0, r.stdout + r.stderr


def test_panel_runs_as_the_daemon_user_below_the_alarm_path() -> None:
    panel, daemon = settings(UNIT), settings("courtyard-gateway.service")
    assert panel["User"] == daemon["User"] and panel["Group"] == daemon["Group"]
    assert panel["ExecStart"][0].endswith("gateway panel run --config /etc/courtyard-gateway/gateway.toml")
    assert panel["Restart"] == ["always"] and panel["Wants"][0].startswith("courtyard-gateway.service")
    assert "Requires" not in panel and "BindsTo" not in panel  # the daemon never depends on the panel
    assert int(panel["Nice"][0]) > 0 and panel["MemoryMax"] and panel["TasksMax"]
    assert panel["PrivateDevices"] == ["yes"] and "DeviceAllow" not in panel
    assert "RemoveIPC" not in panel  # it would reach the IPC objects of the user it shares with the daemon
    for key in ("NoNewPrivileges", "ProtectSystem", "CapabilityBoundingSet", "SystemCallFilter", "RestrictAddressFamilies"):
        assert panel[key] == daemon[key], key
