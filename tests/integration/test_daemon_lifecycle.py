"""`gateway run` as systemd runs it: READY=1 on a real NOTIFY_SOCKET, WATCHDOG=1 while healthy,
STOPPING=1 and exit 0 within 5 s of SIGTERM; a crashing driver never takes the daemon down;
a credentials file readable by others is refused with a clear message."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config/gateway.example.toml"


def _notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(20)
    return s, path


def _run(tmp_path, config, notify_path, extra_env=None):
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "2000000", **(extra_env or {})}
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config),
         "--state-dir", str(tmp_path / "state"), "--runtime-dir", str(tmp_path / "run")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )


def test_example_config_ready_watchdog_and_clean_stop_within_5_s(tmp_path):
    sock, path = _notify_socket(tmp_path)
    proc = _run(tmp_path, EXAMPLE, path)
    try:
        messages = []
        while not any(m.startswith(b"READY=1") for m in messages):
            messages.append(sock.recv(4096))
        # WATCHDOG_USEC=2 s: a ping at least every second while healthy.
        t0 = time.monotonic()
        pings = 0
        while pings < 2:
            if sock.recv(4096) == b"WATCHDOG=1":
                pings += 1
        assert time.monotonic() - t0 < 3.0
        assert (tmp_path / "run" / "control.sock").exists()
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        elapsed = time.monotonic() - t_term
        rest = []
        sock.settimeout(0.5)
        try:
            while True:
                rest.append(sock.recv(4096))
        except socket.timeout:
            pass
        assert rc == 0, proc.stderr.read().decode()[-2000:]
        assert elapsed < 5.0
        assert b"STOPPING=1" in rest
        assert not (tmp_path / "run" / "control.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_credentials_readable_by_others_refuse_start(tmp_path):
    creds = tmp_path / "credentials.toml"
    creds.write_text('mqtt_password = "canary-Secret-77"\n')
    os.chmod(creds, 0o644)
    cfg = tmp_path / "gateway.toml"
    text = EXAMPLE.read_text().replace('profiles_dir = "profiles"', f'profiles_dir = "{ROOT / "config/profiles"}"')
    text = text.replace('# credentials_file = "/etc/courtyard-gateway/credentials.toml"', f'credentials_file = "{creds}"')
    cfg.write_text(text)
    sock, path = _notify_socket(tmp_path)
    proc = _run(tmp_path, cfg, path)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert f"{creds}: credentials file is accessible by group or others (mode 0644); run: chmod 600 {creds}" in err.decode()
    assert b"canary-Secret-77" not in out + err
