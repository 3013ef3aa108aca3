"""Software update end to end (issue 20), privilege-separated as on a gateway: the simulated courtyard's
daemon runs from an install.sh-style release root with that root mounted read-only in its own mount
namespace (the unit's ProtectSystem=strict without ReadWritePaths= for it: it cannot write /opt), after
`launch resolve` (ExecStartPre=+); the root updater (gateway/fleet/updater.py) runs in this test
process whenever the daemon's request file appears, as courtyard-gateway-update.path starts it.
scripts/release.sh builds and signs a bundle served by a loopback HTTP server; `gateway fleet update`'s
wave code sends it over mosquitto. A wrong signature and a tampered bundle change nothing; the good
release is downloaded by the daemon, re-verified, staged with pip --no-index, switched to and the
daemon restarted by the root side, which commits once the new release reports ready and healthy.

The old release is a venv without pip whose .pth names this checkout; dependencies come from the test
venv through PYTHONPATH and pip runs with PIP_NO_DEPS=1 (the test bundle ships our wheel only, built
with --no-deps): the path under test is ours, not PyPI's."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
import threading
import time
import tomllib
from collections.abc import AsyncIterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.control.client import DaemonUnavailable, call
from gateway.fleet import launch, updater
from gateway.fleet.launch import ReleaseSwitch
from tests.reliability.fleet_rig import GW, FleetRig

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def old_release(opt: Path) -> None:
    """venvs/0.1.0-old: this checkout (a .pth) in a venv without pip, `gateway` as a console script."""
    venv = opt / "venvs/0.1.0-old"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "checkout.pth").write_text(str(ROOT) + "\n")
    gw = venv / "bin/gateway"
    gw.write_text(f"#!{venv}/bin/python\nimport sys\nfrom gateway.cli.main import cli\nsys.exit(cli())\n")
    gw.chmod(0o755)
    (venv / ".complete").write_text("0.1.0-old\n")
    os.symlink("venvs/0.1.0-old", opt / "venv")


def read_only(opt: Path) -> list[str]:
    """A command prefix: a private mount namespace where `opt` is read-only (what ProtectSystem=strict
    does for the unit); the root side, outside it, still writes."""
    user = ["-r"] if os.geteuid() != 0 else []  # without root: a user namespace allows the mounts
    return ["unshare", *user, "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"', str(opt)]


class UpdateRig(FleetRig):
    """The fleet rig, its daemon started as the unit starts it (resolve, then venv/bin/gateway) and the
    root updater run when the daemon asks (courtyard-gateway-update.path)."""

    def __init__(self, tmp_path: Path, broker: Any) -> None:
        super().__init__(tmp_path, broker)
        self.opt = tmp_path / "opt"
        self.keys = tmp_path / "keys"
        old_release(self.opt)
        subprocess.run(["bash", str(ROOT / "scripts/release.sh"), "keygen", str(self.keys)], check=True, timeout=60,
                       capture_output=True, env={**os.environ, "PY": sys.executable})
        self.outcomes: list[str] = []
        self.at: dict[str, float] = {}  # wall-clock instants of the root side's steps
        self._path_unit: asyncio.Task[None] | None = None

    @property
    def request(self) -> Path:
        store = tomllib.loads(self.config.read_text())["store"]["path"]
        return Path(store).resolve().parent / "release/request.json"

    def spawn(self, nofile: int | None = None, refused: bool = False) -> subprocess.Popen[bytes]:
        pre = subprocess.run([sys.executable, launch.__file__, "--opt", str(self.opt), "resolve"], capture_output=True, timeout=30)
        assert pre.returncode == 0, pre.stderr
        env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"], "CG_RELEASE_PUB": str(self.keys / "release.pub")}
        env.pop("NOTIFY_SOCKET", None)
        log = self.log.open("ab")
        proc = subprocess.Popen([*read_only(self.opt), str(self.opt / "venv/bin/gateway"), "run", "--config", str(self.config)],
                                cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        (self.refused if refused else self.daemons).append(proc)
        return proc

    async def start_all(self) -> None:
        await super().start_all()
        self._path_unit = asyncio.create_task(self._watch_request())

    async def _watch_request(self) -> None:
        """courtyard-gateway-update.path: the root updater once per request (bounded by the test's timeout)."""
        hooks = updater.Hooks(self._restart_unit, self._unit_active)
        while True:
            if self.request.exists():
                self.at["request_seen"] = time.time()
                self.outcomes.append(await asyncio.to_thread(
                    updater.handle, self.request, ReleaseSwitch(self.opt), self.keys / "release.pub", hooks, 0.2))
                self.at["resolved"] = time.time()
            await asyncio.sleep(0.05)

    def _restart_unit(self) -> None:
        """systemctl restart courtyard-gateway (from the root updater's thread)."""
        self.at["restart"] = time.time()
        proc = self.daemons[-1]
        proc.terminate()
        proc.wait(30)
        self.daemons.remove(proc)
        self.restarted.append(proc)
        self.spawn()

    def _unit_active(self) -> bool:
        """systemctl is-active: the daemon's main process runs and answers (READY=1 sent)."""
        try:
            return self.daemons[-1].poll() is None and call(self.socket, "status", timeout_s=2).ok
        except (DaemonUnavailable, IndexError):
            return False

    async def stop(self) -> list[int]:
        if self._path_unit is not None:
            self._path_unit.cancel()
            await asyncio.gather(self._path_unit, return_exceptions=True)
        return await super().stop()


class Served:
    """The platform's release server on loopback; `tamper` flips one byte of what it serves."""

    def __init__(self, directory: Path) -> None:
        self.tamper = False
        served = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def copyfile(self, source: Any, outputfile: Any) -> None:
                data = source.read()
                if served.tamper:
                    data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
                outputfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(directory)))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
async def urig(tmp_path: Path, broker: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[UpdateRig]:
    monkeypatch.setenv("PIP_NO_DEPS", "1")  # the root side's pip, in this process (see the module docstring)
    r = UpdateRig(tmp_path, broker)
    yield r
    await r.stop()


def build(rig: UpdateRig, server: Served, version: str) -> dict[str, Any]:
    dist = rig.tmp / "dist"
    t0 = time.monotonic()
    subprocess.run(["bash", str(ROOT / "scripts/release.sh"), "build", "--key", str(rig.keys / "release.key"), "--url-base",
                    server.base, "--out", str(dist), "--version", version, "--no-deps"],
                   check=True, timeout=120, capture_output=True, env={**os.environ, "PY": sys.executable})
    rig.figures["release_build_s"] = round(time.monotonic() - t0, 1)
    return json.loads((dist / f"courtyard-gateway-{version}.tar.gz.manifest.json").read_text())


async def test_signed_release_is_refused_when_tampered_and_committed_when_good(urig: UpdateRig, tmp_path: Path) -> None:
    rig = urig
    await rig.start_all()
    await _commands_heard(rig)
    (tmp_path / "dist").mkdir()
    server = Served(tmp_path / "dist")
    manifest = build(rig, server, "0.1.1")
    sw = ReleaseSwitch(rig.opt)

    # A manifest signed by another key: refused at once, nothing downloaded.
    forged = {**manifest, "sig": "00" * 64}
    reply = await rig.send(rig.signed("update", forged))
    assert reply["status"] == "rejected" and reply["reason"] == "bad_release_signature", reply

    # A genuinely signed manifest of a release older than the running 0.1.0 (a replay of an old one with a
    # known hole): refused at once by the rollback floor, nothing downloaded.
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from gateway.fleet.release import sign_release

    key = load_pem_private_key((rig.keys / "release.key").read_bytes(), None)
    old = {**manifest, "version": "0.0.9", "sig": sign_release(key, "0.0.9", manifest["sha256"], manifest["size"])}  # type: ignore[arg-type]
    reply = await rig.send(rig.signed("update", old))
    assert reply["status"] == "rejected" and reply["reason"] == "downgrade_refused", reply

    # The right manifest, tampered bytes on the wire: downloaded, refused on its hash, nothing switched.
    server.tamper = True
    reply = await rig.send(rig.signed("update", {**manifest, "commit_deadline_s": 60}))
    assert reply["status"] == "accepted" and reply["result"]["result"] == "downloading", reply
    status = await _settled(rig, lambda s: s["phase"] == "failed")
    assert "SHA-256" in status["last_update_error"] and status["release"] == "0.1.0-old"
    assert sw.current() == "venvs/0.1.0-old" and sw.pending() is None and sorted(os.listdir(rig.opt / "venvs")) == ["0.1.0-old"]
    assert not rig.request.exists() and rig.outcomes == []  # nothing was asked of the root side
    assert rig.alarm_path_ready(), rig.why_not_ready
    # The daemon cannot write the release root (as under the unit's ProtectSystem=strict).
    probe = subprocess.run([*read_only(rig.opt), "touch", str(rig.opt / "venv.new")], capture_output=True, text=True, timeout=30)
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe

    # The good bytes, sent by `gateway fleet update` (waves, signed command): downloaded and requested
    # by the daemon; re-verified, staged, switched, restarted and committed by the root side; the tool
    # prints the outcome.
    server.tamper = False
    key_id, key = rig.key
    (tmp_path / "ops.hex").write_text(key)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    t0 = time.monotonic()
    tool = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", "fleet", "update", "--broker", rig.broker.url, "--key-id", key_id,
                         "--key-file", str(tmp_path / "ops.hex"), "--gateway", GW, "--manifest", str(tmp_path / "manifest.json"),
                         "--deadline-s", "60", "--settle-timeout-s", "150"], capture_output=True, text=True, timeout=200, cwd=ROOT)
    rig.figures["update_to_committed_s"] = round(time.monotonic() - t0, 1)
    assert tool.returncode == 0, (tool.stdout, tool.stderr, rig.log.read_text()[-3000:])
    gw, outcome, release = tool.stdout.split()[:3]
    assert (gw, outcome) == (GW, "committed") and release.startswith("0.1.1-"), tool.stdout
    assert sw.current().startswith("venvs/0.1.1-") and sw.pending() is None
    assert rig.outcomes == ["committed"]
    final = rig.status()
    assert final["version"] == "0.1.1"  # the new venv's own copy of the code runs now
    assert (rig.opt / sw.current() / ".complete").exists() and (rig.opt / "venvs/0.1.0-old").exists()  # previous kept
    assert len(rig.restarted) == 1  # one restart, by the root side
    # The new venv has its own pip (from the bundle's wheel): the next update can be installed from it.
    assert subprocess.run([str(rig.opt / sw.current() / "bin/python"), "-I", "-m", "pip", "--version"], capture_output=True, timeout=60).returncode == 0
    await rig.wait_alarm_path()
    await rig.smoke()  # the alarm path on the new release: sounder and SMS
    rig.figures.update(_phases(rig.log, rig.at))
    print(f"FLEET update {rig.figures}")


def _phases(log: Path, at: dict[str, float]) -> dict[str, float]:
    """Seconds between the steps of the good update (docs/fleet.md "Measured"): the daemon's own events
    and the root side's instants (wall clock, both)."""
    from datetime import datetime

    for line in log.read_text().splitlines():
        if line.startswith("{") and '"event"' in line:
            doc = json.loads(line)
            event = "update_accepted" if doc.get("command") == "update" else doc["event"]  # the last one: the good release
            if event in ("update_accepted", "update_requested", "daemon_ready", "release_committed"):
                at[event] = datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00")).timestamp()
    return {"download_s": round(at["update_requested"] - at["update_accepted"], 1),
            "verify_install_switch_s": round(at["restart"] - at["request_seen"], 1),
            "restart_to_ready_s": round(at["daemon_ready"] - at["restart"], 1),
            "ready_to_committed_s": round(at["resolved"] - at["daemon_ready"], 1)}


async def _settled(rig: UpdateRig, done: Any, timeout_s: float = 60) -> dict[str, Any]:
    """update_status over the signed downlink until done(result) (bounded)."""
    end = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < end:
        reply = await rig.send(rig.signed("update_status", {}))
        last = reply.get("result", {})
        if reply["status"] == "accepted" and done(last):
            return last
        await asyncio.sleep(0.3)
    raise TimeoutError(f"update not settled within {timeout_s} s: {last}")


async def _commands_heard(rig: UpdateRig, timeout_s: float = 30) -> None:
    """"Uplink up" can come a moment before the command subscription is granted: ping until answered."""
    end = time.monotonic() + timeout_s
    while True:
        try:
            await rig.send(rig.signed("ping", {}), timeout_s=2)
            return
        except TimeoutError:
            if time.monotonic() > end:
                raise
