"""The web panel beside the matrix rig (issue 24): the real `gateway panel run` process on 127.0.0.1,
and Debian's chromium driven by Selenium through Debian's chromedriver (no browser download). Selenium
blocks, and the simulated courtyard runs on the test's loop, so every browser call goes to a thread."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from tomli_w import dumps

from gateway.panel.security import hash_pin
from tests.reliability.matrix_rig import ROOT, Rig

PIN = "4711"
CODE_KEY = "5a" * 32
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
T = TypeVar("T")


def add_panel(doc: dict[str, Any], port: int) -> None:
    """The rig's `bend`: a [panel] on loopback with a short lockout, and the PIN in the credentials file."""
    doc["panel"] = {"address": "127.0.0.1", "port": port, "max_attempts": 3, "lockout_s": 60.0, "poll_period_s": 0.3}
    cpath = Path(doc["uplink"].setdefault("credentials_file", str(Path(doc["control"]["socket"]).parent / "panel-creds.toml")))
    creds = tomllib.loads(cpath.read_text()) if cpath.exists() else {}
    cpath.touch(mode=0o600)
    creds.update(panel_pin_hash=hash_pin(PIN), panel_code_key=CODE_KEY)
    cpath.write_text(dumps(creds))


class Panel:
    def __init__(self, rig: Rig, port: int) -> None:
        self.rig, self.port = rig, port
        self.base = f"http://127.0.0.1:{port}"
        self.log = rig.tmp / "panel.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "panel", "run", "--config", str(self.rig.config)],
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        await until(lambda: self.state().get("link", {}).get("up"), 30, "panel serving with the daemon reachable")
        return self.proc

    def state(self) -> dict[str, Any]:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"panel exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        try:
            status, body = request("GET", self.port, "/api/state")
        except OSError:
            return {}
        return json.loads(body) if status == 200 else {}

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def request(method: str, port: int, path: str, body: dict[str, Any] | None = None, source: str = "127.0.0.1",
            headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One plain HTTP request from `source` (any 127/8 address: a second client for the attempt limit)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def browser(shots: Path) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1024,768",
                "--lang=zh-CN", "--disable-gpu", f"--user-data-dir={shots / 'profile'}"):
        opts.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not fetch a browser or driver
    # chromedriver's verbose log, Chromium's stderr included, stays in shots/. "Chrome instance exited" at
    # start-up was Chromium's CHECK that its mkdtemp directory is 0700 (its minidumps in ~/.config/chromium/
    # Crash Reports), failing under the umask 0117 the control server used to leave in this process; the
    # umask is no longer touched, and tests/conftest.py fails any test that leaves it changed.
    service = Service(CHROMEDRIVER, service_args=["--verbose"], log_output=str(shots / "chromedriver.log"))
    return webdriver.Chrome(options=opts, service=service)


def settled(read: Callable[[], T], attempts: int = 20) -> T:
    """`read()` again when the page re-rendered under it: every state update rebuilds the alarm cards and
    checklist rows, so an element found a moment ago can be stale by the time it is read or clicked."""
    for left in range(attempts - 1, -1, -1):
        try:
            return read()
        except StaleElementReferenceException:
            if not left:
                raise
    raise AssertionError("unreachable")


async def until(cond: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.05) -> object:
    """Wait for a blocking condition (a browser query) without blocking the courtyard's loop; an element
    gone stale under the query means "not yet", like a false answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            value = await asyncio.to_thread(cond)
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval_s)
