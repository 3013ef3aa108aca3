"""The installer view in a real browser (issue 24): closed without the one-time code, the walk checklist
per building once it is given, a tick appearing live, a spent or wrong code refused.

The walk-test commands (`walk_status`, issue 23) are on branch commission, not yet on main, so the panel
here talks to a stand-in control server on a real unix socket that answers `status`, `alarms` and
`walk_status` in the shape docs/CLI.md gives for `commission walk --json`. The guard view and the alarm
path run against the real daemon in tests/reliability/test_panel_browser.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from tomli_w import dumps

from gateway.control.protocol import decode_request, encode
from gateway.panel.security import hash_pin, walk_code
from tests.reliability.panel_rig import CODE_KEY, browser, request, settled, until
from tests.support.ports import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STARTED = 1_764_590_000.0


def walk_report(ticked: set[str]) -> dict[str, Any]:
    def dev(i: str, room: str) -> dict[str, Any]:
        return {"id": i, "type": "smoke", "needs": "test_button", "ticked": i in ticked, "how": "test_button" if i in ticked else None,
                "at_wall": STARTED + 60 if i in ticked else None, "signal": {"rssi_dbm": -97, "snr_db": 6.5}, "battery": 88}
    return {"active": True, "building": "1", "started_wall": STARTED, "started_by": "cli", "elapsed_s": 60.0, "left_s": 3540.0,
            "end_reason": None, "total": 2, "done": len(ticked), "left": 2 - len(ticked), "tagged_as_test": [],
            "buildings": [{"building": "1", "flats": [{"flat": "1单元202", "devices": [dev("smoke-1-1-202", "202")]},
                                                      {"flat": "1单元302", "devices": [dev("smoke-1-1-302", "302")]}]}]}


class StandIn:
    """A control server answering the panel's three read commands; `ticked` is the walk's state."""

    def __init__(self) -> None:
        self.ticked: set[str] = set()
        self.cmds: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            req = decode_request(line)
            self.cmds.append(req.cmd)
            result = {"status": {"trouble": [], "gateway_id": "gw-test"}, "alarms": [],
                      "walk_status": walk_report(self.ticked)}.get(req.cmd)
            writer.write(encode({"id": req.id, "ok": result is not None, "result": result,
                                 **({} if result is not None else {"error": "unknown_command"})}))
            await writer.drain()
        writer.close()


def config(tmp: Path, sock: Path, port: int) -> Path:
    creds = tmp / "creds.toml"
    creds.write_text(dumps({"panel_pin_hash": hash_pin("4711"), "panel_code_key": CODE_KEY}))
    creds.chmod(0o600)
    cfg = tmp / "gateway.toml"
    cfg.write_text(dumps({"profiles_dir": str(ROOT / "config/profiles"), "identity": {"gateway_id": "gw-test"}, "clock": {"sync": "assume_synced"},
                          "uplink": {"broker_url": "mqtt://127.0.0.1:1", "credentials_file": str(creds)},
                          "store": {"path": str(tmp / "outbox.db")}, "control": {"socket": str(sock)},
                          "panel": {"address": "127.0.0.1", "port": port, "poll_period_s": 0.3}}))
    return cfg


async def test_installer_view_opens_with_the_one_time_code(tmp_path: Path) -> None:
    stand_in, sock, port = StandIn(), tmp_path / "control.sock", free_port()
    server = await asyncio.start_unix_server(stand_in.serve, str(sock))
    log = (tmp_path / "panel.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "panel", "run", "--config", str(config(tmp_path, sock, port))],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    shots = tmp_path / "shots"
    shots.mkdir()
    drv = None
    try:
        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "panel.log").read_text()
            try:
                return json.loads(request("GET", port, "/api/state")[1])["link"]["up"]
            except OSError:
                return False
        await until(up, 30, "panel up")
        # Without the code the state carries no checklist, whoever asks.
        assert json.loads(request("GET", port, "/api/state")[1])["walk"] is None

        drv = browser(shots)
        await asyncio.to_thread(drv.get, f"http://127.0.0.1:{port}/installer")
        await until(lambda: drv.find_element(By.ID, "code-form").is_displayed(), 10, "code form")

        def enter(code: str) -> None:
            box = drv.find_element(By.ID, "code")
            box.clear()
            box.send_keys(code)
            drv.find_element(By.ID, "code-ok").click()

        await asyncio.to_thread(enter, "12345678" if walk_code(CODE_KEY, STARTED) != "12345678" else "87654321")
        await until(lambda: drv.find_element(By.ID, "code-error").text == "验证码错误", 5, "wrong code refused")
        await asyncio.to_thread(enter, walk_code(CODE_KEY, STARTED))
        await until(lambda: drv.find_element(By.ID, "walk").is_displayed(), 5, "checklist shown")
        rows = lambda: {r.get_attribute("data-device-id"): r.get_attribute("class") for r in drv.find_elements(By.CSS_SELECTOR, "tr[data-device-id]")}  # noqa: E731
        assert await until(lambda: rows() == {"smoke-1-1-202": "left", "smoke-1-1-302": "left"}, 5, "two devices left")

        t0 = time.monotonic()
        stand_in.ticked.add("smoke-1-1-202")  # the simulator pressed its test button: the daemon ticks it
        await until(lambda: rows().get("smoke-1-1-202") == "done", 2, "tick shown live")
        tick_s = time.monotonic() - t0
        assert "已测 1 / 共 2" in drv.find_element(By.ID, "walk-summary").text
        assert "RSSI -97" in settled(lambda: drv.find_element(By.CSS_SELECTOR, "tr[data-device-id='smoke-1-1-202']").text)
        await asyncio.to_thread(drv.save_screenshot, str(shots / "panel-installer.png"))

        # The code is spent: a second phone cannot open the view with it.
        headers = {"Content-Type": "application/json", "X-CSRF-Token": "t", "Cookie": "csrf=t"}
        status, body = request("POST", port, "/api/installer/login", {"code": walk_code(CODE_KEY, STARTED)}, "127.0.0.2", headers)
        assert status == 403, body
        print(f"PANEL installer tick shown in {tick_s:.2f} s; screenshot {shots / 'panel-installer.png'}")
        if os.environ.get("PANEL_SAVE_DOCS"):
            (ROOT / "docs/screenshots/panel-installer.png").write_bytes((shots / "panel-installer.png").read_bytes())
        assert {"status", "alarms", "walk_status"} <= set(stand_in.cmds)
        assert not {"alarm_ack", "alarm_silence"} & set(stand_in.cmds)
    finally:
        if drv is not None:
            drv.quit()
        proc.terminate()
        proc.wait(10)
        log.close()
        server.close()
