"""The new release's health report and the root updater's commit (issue 20, gateway/fleet/update.py
and updater.py): committed once the daemon answers healthy on the control socket; switched back and
restarted at the deadline when the uplink it had before is not acknowledged, with the release's own
reason; and the `update` arguments are checked before anything is fetched."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.errors import CommandRejected
from gateway.fleet import update, updater
from gateway.fleet.launch import ReleaseSwitch

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config/gateway.example.toml"
SIG = "ab" * 64
HEALTHY = {"uptime_s": 12.0, "active_alarms": 0, "tasks": {"rules": {"running": True}},
           "drivers": {"rs485": {"state": "ok"}}, "uplink": {"up": True}}


class StatusServer:
    """A control socket answering `status` with whatever `self.status` holds."""

    def __init__(self, path: Path) -> None:
        self.status: dict[str, Any] = HEALTHY
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.path = str(path)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(json.dumps({"id": 1, "ok": True, "result": self.status}).encode() + b"\n")


@pytest.fixture
def rel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ReleaseSwitch, StatusServer]]:
    """A release root, and a config whose store lies in tmp_path (health.json goes to tmp_path/release)."""
    (tmp_path / "release").mkdir()
    text = EXAMPLE.read_text().replace('"/var/lib/courtyard-gateway/outbox.db"', f'"{tmp_path / "outbox.db"}"')
    (tmp_path / "gateway.toml").write_text(text.replace('profiles_dir = "profiles"', f'profiles_dir = "{ROOT / "config/profiles"}"'))
    for name in ("old", "new"):
        (tmp_path / "venvs" / name).mkdir(parents=True)
        (tmp_path / "venvs" / name / ".complete").touch()
    os.symlink("venvs/old", tmp_path / "venv")
    monkeypatch.setenv("CG_RELEASE_ROOT", str(tmp_path))
    server = StatusServer(tmp_path / "control.sock")
    yield ReleaseSwitch(tmp_path), server
    server.sock.close()


def _root(sw: ReleaseSwitch, restarts: list[bool]) -> str:
    """courtyard-gateway-update.service's supervision, the unit active (READY=1 seen by systemd)."""
    return updater.supervise(sw, sw.opt / "release" / updater.HEALTH, updater.Hooks(lambda: restarts.append(True), lambda: True), poll_s=0.05)


def test_a_healthy_release_is_committed(rel: tuple[ReleaseSwitch, StatusServer]) -> None:
    sw, server = rel
    sw.switch("venvs/new", "2.0.0", 30, sha256="cd" * 32, uplink_was_up=True)
    t = update.watch_release(str(sw.opt / "gateway.toml"), server.path, threading.Event())
    assert t is not None
    restarts: list[bool] = []
    assert _root(sw, restarts) == "committed" and restarts == []
    t.join(20)
    assert not t.is_alive() and sw.pending() is None and sw.current() == "venvs/new"
    st = update.status_fields()
    assert (st["committed_version"], st["last_update_error"], st["release"], st["phase"]) == ("2.0.0", "", "new", "idle")
    # The same object goes into the retained status under `update`: it must pass its schema.
    schema = json.loads((ROOT / "gateway/uplink/schemas/status.json").read_text())["properties"]["update"]
    jsonschema.validate(st, schema)
    assert set(st) <= set(schema["properties"])


def test_an_uplink_not_acknowledged_by_the_deadline_switches_back(rel: tuple[ReleaseSwitch, StatusServer]) -> None:
    sw, server = rel
    server.status = {**HEALTHY, "uplink": {"up": False, "reason": "connection refused"}}
    restarts: list[bool] = []
    sw.switch("venvs/new", "2.0.1", 1.0, uplink_was_up=True)
    t = update.watch_release(str(sw.opt / "gateway.toml"), server.path, threading.Event())
    assert t is not None
    assert _root(sw, restarts) == "rolled_back"
    t.join(20)
    assert sw.current() == "venvs/old" and sw.pending() is None and restarts == [True]
    assert sw.state()["last_update_error"] == "not healthy within 1 s: uplink not acknowledged (connection refused)"


def test_update_args_are_checked_before_anything_is_fetched() -> None:
    good = {"version": "2.0.0", "sha256": "cd" * 32, "size": 10, "url": "https://p/r.tgz", "sig": SIG}
    m, deadline_s, rate = update.parse_update({**good, "commit_deadline_s": 60})
    assert (m.version, deadline_s, rate) == ("2.0.0", 60.0, update.DEFAULT_RATE_BPS)
    for bad in ({**good, "version": "../../etc"}, {**good, "commit_deadline_s": 5}, {**good, "rate_bps": True},
                {**good, "extra": 1}, {k: v for k, v in good.items() if k != "sig"}):
        with pytest.raises(CommandRejected) as exc:
            update.parse_update(bad)
        assert exc.value.reason == "bad_release"
