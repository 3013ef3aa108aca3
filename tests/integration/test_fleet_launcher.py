"""The release launcher (issue 20), run as systemd runs it: a release that never sends READY is
switched back at its deadline, a crash-looping one after MAX_STARTS starts, READY is relayed to the
unit's NOTIFY_SOCKET, and a SIGKILL at any instant of a switch leaves the next start on a complete
release. The "releases" are tiny venv directories whose bin/gateway is a script: the launcher must
decide without running any code of the release it judges."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.fleet import launch
from gateway.fleet.launch import MAX_STARTS, ReleaseSwitch

LAUNCH = Path(launch.__file__)
pytestmark = pytest.mark.timeout(60)


def _release(opt: Path, name: str, body: str) -> str:
    gw = opt / "venvs" / name / "bin/gateway"
    gw.parent.mkdir(parents=True)
    gw.write_text(body)
    gw.chmod(0o755)
    (opt / "venvs" / name / ".complete").write_text(name + "\n")
    return f"venvs/{name}"


def _opt(tmp_path: Path) -> tuple[Path, Path]:
    """opt with an old release that logs "old <args>" and exits 0 (a clean stop)."""
    opt, log = tmp_path / "opt", tmp_path / "starts.log"
    _release(opt, "old", f'#!/bin/sh\necho "old $*" >> {log}\n')
    os.symlink("venvs/old", opt / "venv")
    return opt, log


def _systemd(opt: Path, max_starts: int = 8, env: dict[str, str] | None = None) -> list[int]:
    """Restart=always: start the launcher again after each non-zero exit (bounded)."""
    codes = []
    for _ in range(max_starts):
        r = subprocess.run([sys.executable, str(LAUNCH), "--opt", str(opt), "run", "--config", "x.toml"],
                           env={**os.environ, **(env or {})}, timeout=45, capture_output=True)
        codes.append(r.returncode)
        if r.returncode == 0:
            break
    return codes


@pytest.mark.slow
def test_a_release_that_never_sends_ready_is_switched_back_at_its_deadline(tmp_path: Path) -> None:
    opt, log = _opt(tmp_path)
    new = _release(opt, "hangs", f'#!/bin/sh\necho "hangs $*" >> {log}\nexec sleep 600\n')
    sw = ReleaseSwitch(opt)
    sw.switch(new, "2.0.0", deadline_s=1.0)
    t0 = time.monotonic()
    codes = _systemd(opt)
    took = time.monotonic() - t0
    assert codes == [launch.RESTART_EXIT, 0]
    assert log.read_text().splitlines() == ["hangs run --config x.toml", "old run --config x.toml"]
    assert sw.current() == "venvs/old" and sw.pending() is None
    assert "never sent READY" in str(sw.state()["last_update_error"])
    assert took < 1.0 + launch.DEADLINE_GRACE_S + 5, took
    print(f"FLEET never_ready_rolled_back_s={took:.1f}")


def test_a_crash_looping_release_is_switched_back_after_max_starts(tmp_path: Path) -> None:
    opt, log = _opt(tmp_path)
    sw = ReleaseSwitch(opt)
    sw.switch(_release(opt, "crashes", f'#!/bin/sh\necho crashes >> {log}\nexit 3\n'), "2.0.1", deadline_s=600)
    assert _systemd(opt) == [3] * MAX_STARTS + [0]
    assert log.read_text().splitlines() == ["crashes"] * MAX_STARTS + ["old run --config x.toml"]
    assert sw.current() == "venvs/old" and sw.pending() is None
    assert sw.state()["last_update_error"] == f"crash loop: {MAX_STARTS} starts without becoming ready"


def test_ready_is_relayed_to_systemd_and_a_committing_release_stays(tmp_path: Path) -> None:
    """The new release sends READY=1 to the launcher's socket; the launcher forwards it (from the
    unit's main PID) and notes it in the marker; the release sees that and commits itself."""
    opt, _ = _opt(tmp_path)
    script = f"""#!{sys.executable}
import os, socket, sys, time
sys.path.insert(0, {str(LAUNCH.parent)!r})
from launch import ReleaseSwitch
addr = os.environ["NOTIFY_SOCKET"]
target = "\\0" + addr[1:] if addr.startswith("@") else addr
if os.fork() == 0:  # another process (not the release's main one) trying to forge READY
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1\\nSTATUS=forged", target)
    os._exit(0)
os.wait()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\\nSTATUS=running", target)
sw = ReleaseSwitch(os.environ["CG_RELEASE_ROOT"])
for _ in range(200):
    p = sw.pending()
    if p.ready:
        sw.commit(p)
        sys.exit(0)
    time.sleep(0.05)
sys.exit(9)
"""
    sw = ReleaseSwitch(opt)
    sw.switch(_release(opt, "good", script), "2.1.0", deadline_s=30, sha256="ab" * 32)
    up = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    up.bind(str(tmp_path / "notify"))
    up.settimeout(20)
    assert _systemd(opt, env={"NOTIFY_SOCKET": str(tmp_path / "notify")}) == [0]
    assert up.recv(4096) == b"READY=1\nSTATUS=running"
    up.settimeout(0)
    with pytest.raises(BlockingIOError):
        up.recv(4096)  # the forged READY=1 from a grandchild was dropped, not relayed
    assert sw.current() == "venvs/good" and sw.pending() is None
    assert sw.state()["committed_version"] == "2.1.0" and sw.state()["last_update_error"] == ""


_SWITCHER = """
import sys
from gateway.fleet.launch import ReleaseSwitch
sw = ReleaseSwitch(sys.argv[1])
print("go", flush=True)
while True:
    sw.switch("venvs/new" if sw.current() == "venvs/old" else "venvs/old", "x", 600)
"""


@pytest.mark.slow
def test_sigkill_during_the_switch_then_the_launcher_runs_a_complete_release(tmp_path: Path) -> None:
    """Power cut (SIGKILL) at random instants of switching; each time the launcher starts the release
    the link names, which is old or new and complete, never a missing or half-made link."""
    opt, log = _opt(tmp_path)
    _release(opt, "new", f'#!/bin/sh\necho "new $*" >> {log}\n')
    rnd = random.Random(2012)
    seen = set()
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", _SWITCHER, str(opt)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        time.sleep(rnd.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        log.unlink(missing_ok=True)
        codes = _systemd(opt)
        assert codes[-1] == 0, codes
        ran = log.read_text().split()[0]
        seen.add(ran)
        linked = os.readlink(opt / "venv")
        assert (opt / linked / ".complete").exists() and linked.endswith(ran)
        # Cut before the rename: marker dropped, the release the link still names ran. After it: the
        # switched-to release ran as the launcher's child, its start counted in the marker.
        p = ReleaseSwitch(opt).pending()
        assert p is None or (p.new == linked and p.starts == 1)
        (opt / "release.pending").unlink(missing_ok=True)
    assert seen <= {"old", "new"}
