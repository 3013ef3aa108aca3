"""The release resolver and the root updater's supervision (issue 20), run as systemd runs them: the
unit's `ExecStartPre=+launch resolve` then `ExecStart=venv/bin/gateway`, started again after every
exit (Restart=always), and the root updater's supervise() in a thread as courtyard-gateway-update.service.
A release that never becomes ready is switched back at its deadline, a crash-looping one after
MAX_STARTS starts, a health report about another switch does not commit, and a SIGKILL at any instant
of a switch leaves the next start on a complete release. The "releases" are tiny venv directories
whose bin/gateway is a script: the resolver decides without running any code of the release it judges."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.fleet import launch, updater
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


class Systemd:
    """Restart=always for the daemon unit: `launch resolve` (ExecStartPre=+), then the linked release's
    gateway (ExecStart), again after each non-zero exit (bounded). `restart()` is systemctl restart."""

    def __init__(self, opt: Path) -> None:
        self.opt = opt
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()

    def run(self, max_starts: int = 8) -> list[int]:
        codes = []
        for _ in range(max_starts):
            pre = subprocess.run([sys.executable, str(LAUNCH), "--opt", str(self.opt), "resolve"], timeout=45, capture_output=True)
            assert pre.returncode == 0, pre.stderr  # ExecStartPre never fails the start
            with self.lock:
                self.proc = subprocess.Popen([str(self.opt / "venv/bin/gateway"), "run", "--config", "x.toml"])
            codes.append(self.proc.wait(45))
            if codes[-1] == 0:
                break
        return codes

    def restart(self) -> None:
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()


def _systemd(opt: Path, max_starts: int = 8) -> list[int]:
    return Systemd(opt).run(max_starts)


@pytest.mark.slow
def test_a_release_that_never_becomes_ready_is_switched_back_at_its_deadline(tmp_path: Path) -> None:
    opt, log = _opt(tmp_path)
    new = _release(opt, "hangs", f'#!/bin/sh\necho "hangs $*" >> {log}\nexec sleep 600\n')
    sw = ReleaseSwitch(opt)
    sw.switch(new, "2.0.0", deadline_s=1.0)
    unit = Systemd(opt)
    t0 = time.monotonic()
    outcome: list[str] = []
    root = threading.Thread(target=lambda: outcome.append(updater.supervise(
        sw, tmp_path / "health.json", updater.Hooks(unit.restart, lambda: False), poll_s=0.05)))
    root.start()
    codes = unit.run()
    root.join(10)
    took = time.monotonic() - t0
    assert outcome == ["rolled_back"] and codes == [-signal.SIGTERM, 0]
    assert log.read_text().splitlines() == ["hangs run --config x.toml", "old run --config x.toml"]
    assert sw.current() == "venvs/old" and sw.pending() is None
    assert sw.state()["last_update_error"] == "not healthy within 1 s: never became ready (READY=1)"
    assert took < 1.0 + 5, took
    print(f"FLEET never_ready_rolled_back_s={took:.1f}")


def test_a_crash_looping_release_is_switched_back_after_max_starts(tmp_path: Path) -> None:
    opt, log = _opt(tmp_path)
    sw = ReleaseSwitch(opt)
    sw.switch(_release(opt, "crashes", f'#!/bin/sh\necho crashes >> {log}\nexit 3\n'), "2.0.1", deadline_s=600)
    assert _systemd(opt) == [3] * MAX_STARTS + [0]
    assert log.read_text().splitlines() == ["crashes"] * MAX_STARTS + ["old run --config x.toml"]
    assert sw.current() == "venvs/old" and sw.pending() is None
    assert sw.state()["last_update_error"] == f"crash loop: {MAX_STARTS} starts without becoming ready"
    # The root updater (started by the .path unit's PathExists at boot) finds nothing left to do.
    assert updater.supervise(sw, tmp_path / "health.json", updater.Hooks(lambda: None, lambda: True)) == "resolved"


def test_only_a_healthy_report_about_this_switch_commits(tmp_path: Path) -> None:
    """The root updater commits on a health report naming this switch while the unit is active; a
    report about an earlier switch (stale, or written by a compromised daemon before it) does not count."""
    opt, _ = _opt(tmp_path)
    _release(opt, "good", "#!/bin/sh\nexit 0\n")
    sw = ReleaseSwitch(opt)
    health = tmp_path / "health.json"
    restarts: list[bool] = []
    hooks = updater.Hooks(lambda: restarts.append(True), lambda: True)
    p = sw.switch("venvs/good", "2.1.0", deadline_s=1.0, sha256="ab" * 32)
    health.write_text(json.dumps({"release": "venvs/good", "switched_s": p.switched_s - 1, "healthy": True}))
    assert updater.supervise(sw, health, hooks, poll_s=0.05) == "rolled_back"
    assert sw.current() == "venvs/old" and restarts == [True]
    assert sw.state()["last_update_error"] == "not healthy within 1 s: unit active, no health report"
    p = sw.switch("venvs/good", "2.1.0", deadline_s=30, sha256="ab" * 32)
    health.write_text(json.dumps({"release": "venvs/good", "switched_s": p.switched_s, "healthy": True, "why": []}))
    assert updater.supervise(sw, health, hooks, poll_s=0.05) == "committed"
    assert sw.current() == "venvs/good" and sw.pending() is None and restarts == [True]
    st = sw.state()
    assert (st["committed_version"], st["committed_sha256"], st["last_update_error"]) == ("2.1.0", "ab" * 32, "")


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
    """Power cut (SIGKILL) at random instants of switching; each time the unit starts the release
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
        # switched-to release ran, its start counted in the marker by the resolver.
        p = ReleaseSwitch(opt).pending()
        assert p is None or (p.new == linked and p.starts == 1)
        (opt / "release.pending").unlink(missing_ok=True)
    assert seen <= {"old", "new"}
