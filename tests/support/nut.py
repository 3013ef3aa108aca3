"""A real NUT upsd with the dummy-ups driver on a free 127.0.0.1 port, steered by rewriting its .dev file.

dummy-ups in dummy-once mode (NUT >= 2.8.0, `*.dev`) re-reads the file when its mtime changes, checked
every `pollinterval` (1 s here): each write gets a strictly later mtime so no change is missed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from tests.support.broker import free_port, wait_port

NUT_LIBEXEC = Path("/lib/nut")


def available() -> bool:
    return (NUT_LIBEXEC / "upsd").exists() and (NUT_LIBEXEC / "dummy-ups").exists()


class NutServer:
    def __init__(self, workdir: Path, ups: str = "pihat", port: int | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ups = ups
        self.port = port or free_port()
        self.dev = self.dir / f"{ups}.dev"
        self.procs: dict[str, subprocess.Popen] = {}
        self._mtime = time.time() - 100
        self.env = {**os.environ, "NUT_CONFPATH": str(self.dir), "NUT_STATEPATH": str(self.dir),
                    "NUT_ALTPIDPATH": str(self.dir)}
        self.root = os.geteuid() == 0

    def write_conf(self) -> None:
        (self.dir / "ups.conf").write_text(
            "pollinterval = 1\n" + ("user = root\n" if self.root else "") +
            f"[{self.ups}]\n  driver = dummy-ups\n  port = {self.dev}\n  desc = \"test UPS HAT\"\n")
        (self.dir / "upsd.conf").write_text(f"LISTEN 127.0.0.1 {self.port}\n")
        users = self.dir / "upsd.users"
        users.write_text("[gateway]\n  password = test-pass\n  instcmds = ALL\n")
        users.chmod(0o600)

    def set_status(self, status: str, charge: float = 100, runtime_s: float = 1800) -> float:
        """Rewrite the .dev file; returns time.monotonic() of the change (the deadline counts from here)."""
        tmp = self.dev.with_suffix(".tmp")
        tmp.write_text(f"ups.status: {status}\nbattery.charge: {charge:g}\nbattery.runtime: {runtime_s:g}\n"
                       "ups.mfr: Test\nups.model: HAT\n")
        self._mtime = max(self._mtime + 1, time.time())
        os.utime(tmp, (self._mtime, self._mtime))
        os.replace(tmp, self.dev)
        return time.monotonic()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the child process writes it for its whole life
        self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def start_driver(self) -> None:
        self._spawn("driver", [str(NUT_LIBEXEC / "dummy-ups"), "-a", self.ups, "-F", *(["-u", "root"] if self.root else [])])
        deadline = time.monotonic() + 10
        while not any(p.name.startswith(f"dummy-ups-{self.ups}") for p in self.dir.iterdir()):
            if time.monotonic() > deadline:
                raise RuntimeError("dummy-ups did not create its socket: " + (self.dir / "driver.log").read_text())
            time.sleep(0.02)

    def start_upsd(self) -> None:
        self._spawn("upsd", [str(NUT_LIBEXEC / "upsd"), "-F", *(["-u", "root"] if self.root else [])])
        wait_port(self.port)

    def start(self, status: str = "OL") -> "NutServer":
        self.write_conf()
        self.set_status(status)
        self.start_driver()
        self.start_upsd()
        self.wait_status(status)
        return self

    def query(self, line: str) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(line.encode() + b"\n")
            return s.makefile().readline().strip()

    def wait_status(self, status: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.query(f"GET VAR {self.ups} ups.status") == f'VAR {self.ups} ups.status "{status}"':
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"upsd never showed {status!r}")
            time.sleep(0.05)

    def stop(self, name: str | None = None) -> None:
        for key in [name] if name else list(self.procs):
            proc = self.procs.pop(key, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if name == "upsd" or name is None:
            wait_port(self.port, up=False)
