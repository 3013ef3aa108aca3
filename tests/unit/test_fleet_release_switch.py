"""The release switch (issue 20): SIGKILL at random instants of switching leaves the venv link on
the previous or the new release, never missing; the next start resolves the marker; a crash loop
switches back."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.fleet.switch import MAX_STARTS, ReleaseSwitch, SwitchError


def _opt(tmp_path: Path) -> ReleaseSwitch:
    for v in ("a", "b", "c"):
        (tmp_path / "venvs" / v).mkdir(parents=True)
    for v in ("a", "b"):
        (tmp_path / "venvs" / v / ".complete").touch()
    os.symlink("venvs/a", tmp_path / "venv")
    return ReleaseSwitch(tmp_path)


def test_incomplete_venv_is_refused_and_a_crash_loop_switches_back(tmp_path: Path) -> None:
    sw = _opt(tmp_path)
    with pytest.raises(SwitchError):
        sw.switch("venvs/c", "3", 60)
    assert sw.current() == "venvs/a" and sw.pending() is None
    sw.switch("venvs/b", "2", 60)
    for n in range(1, MAX_STARTS + 1):
        p = sw.at_start()
        assert p is not None and p.starts == n and sw.current() == "venvs/b"
    assert sw.at_start() is None and sw.current() == "venvs/a" and "crash loop" in sw.last_error
    p = sw.switch("venvs/b", "2", 60)
    assert sw.at_start() is not None
    sw.commit(p)
    assert sw.pending() is None and sw.current() == "venvs/b"


_CHILD = """
import sys
from pathlib import Path
from gateway.fleet.switch import ReleaseSwitch
sw = ReleaseSwitch(Path(sys.argv[1]))
print("go", flush=True)
while True:
    p = sw.switch("venvs/b" if sw.current() == "venvs/a" else "venvs/a", "x", 60)
    sw.commit(p)
"""


@pytest.mark.slow
def test_sigkill_during_the_switch_leaves_a_release_and_the_start_resolves_it(tmp_path: Path) -> None:
    sw = _opt(tmp_path)
    rnd = random.Random(20)
    seen = set()
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        time.sleep(rnd.uniform(0, 0.03))  # the instant of the power cut: random by design
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert sw.current() in ("venvs/a", "venvs/b") and (tmp_path / sw.current() / ".complete").exists()
        p = sw.at_start()
        if p is not None:
            assert sw.current() == p.new
            sw.commit(p)
            seen.add("pending")
        seen.add(sw.current())
    assert {"venvs/a", "venvs/b"} <= seen
