"""The new release's own commit check (issue 20, gateway/fleet/update.py): committed once its daemon
answers healthy on the control socket; switched back at the deadline when the uplink it had before
is not acknowledged; and the `update` arguments are checked before anything is fetched."""

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
from gateway.fleet import update
from gateway.fleet.launch import ReleaseSwitch
from gateway.fleet.runner import RUNTIME

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "config/gateway.example.toml")
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
    for name in ("old", "new"):
        (tmp_path / "venvs" / name).mkdir(parents=True)
        (tmp_path / "venvs" / name / ".complete").touch()
    os.symlink("venvs/old", tmp_path / "venv")
    monkeypatch.setenv("CG_RELEASE_ROOT", str(tmp_path))
    monkeypatch.delenv("CG_RELEASE_WATCHED", raising=False)
    server = StatusServer(tmp_path / "control.sock")
    yield ReleaseSwitch(tmp_path), server
    server.sock.close()


def test_a_healthy_release_commits_itself(rel: tuple[ReleaseSwitch, StatusServer]) -> None:
    sw, server = rel
    sw.switch("venvs/new", "2.0.0", 30, sha256="cd" * 32, uplink_was_up=True)
    t = update.watch_release(EXAMPLE, server.path, threading.Event())
    assert t is not None
    t.join(20)
    assert sw.pending() is None and sw.current() == "venvs/new"
    st = update.status_fields()
    assert (st["committed_version"], st["last_update_error"], st["release"], st["phase"]) == ("2.0.0", "", "new", "idle")
    # The same object goes into the retained status under `update`: it must pass its schema.
    schema = json.loads((ROOT / "gateway/uplink/schemas/status.json").read_text())["properties"]["update"]
    jsonschema.validate(st, schema)
    assert set(st) <= set(schema["properties"])


def test_an_uplink_not_acknowledged_by_the_deadline_switches_back(rel: tuple[ReleaseSwitch, StatusServer],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sw, server = rel
    server.status = {**HEALTHY, "uplink": {"up": False, "reason": "connection refused"}}
    restarts: list[bool] = []
    monkeypatch.setattr(RUNTIME, "request_restart", lambda: restarts.append(True))
    sw.switch("venvs/new", "2.0.1", 1.0, uplink_was_up=True)
    t = update.watch_release(EXAMPLE, server.path, threading.Event())
    assert t is not None
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
