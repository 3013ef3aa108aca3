"""No test process outlives the pytest run that started it, however that run ends.

Every pytest process (and each xdist worker) puts a fresh token in its environment; every child it starts
inherits it (`gateway run`, panels, mosquitto, upsd, socat, chromedriver and chromium's own children), and
/proc/PID/environ shows it even after the parent is gone. At the end of the run the leftovers are killed
and named (a leak to fix in its fixture); a watchdog in its own session does the same when pytest dies
without its teardown (SIGKILL, a CI timeout): it waits for EOF on a pipe only pytest holds.

Standard library only: the watchdog runs as `python -S reaper.py --watch TOKEN`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

VAR = "COURTYARD_TEST_RUN"


def marked(token: str) -> list[tuple[int, str]]:
    """(pid, command) of every live process whose initial environment carries our token."""
    needle = f"\0{VAR}={token}\0".encode()
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
            if needle not in b"\0" + env:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or a zombie
            continue
        found.append((int(name), cmd))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie is dead, only unreaped
    except (OSError, IndexError):
        return False


def sweep(token: str, grace_s: float = 3.0) -> list[str]:
    """SIGTERM every marked process, SIGKILL what is left after grace_s; returns their command lines."""
    victims = marked(token)
    for pid, _cmd in victims:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while any(_alive(pid) for pid, _ in victims) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid, _cmd in victims:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return [cmd for _pid, cmd in victims]


class Reaper:
    """Marks this process's environment and keeps the watchdog; `finish()` at the end of the run."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        # Its own session: a Ctrl-C to pytest's process group must not take the watchdog first. Unmarked
        # (started before the token is set, or from an xdist controller's token): no sweep kills it.
        env = {k: v for k, v in os.environ.items() if k != VAR}
        self.watchdog = subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__), "--watch", self.token],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, start_new_session=True)
        os.environ[VAR] = self.token

    def finish(self) -> list[str]:
        left = sweep(self.token)
        assert self.watchdog.stdin is not None
        self.watchdog.stdin.close()  # EOF: the watchdog sweeps once more (nothing left) and exits
        self.watchdog.wait(10)
        return left


if __name__ == "__main__" and sys.argv[1:2] == ["--watch"]:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()  # returns at EOF: pytest closed the pipe or died
    sweep(sys.argv[2])
