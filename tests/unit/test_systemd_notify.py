"""The notify protocol against a real AF_UNIX datagram socket, as systemd listens."""

import os
import socket

from gateway.systemd import Notifier


def _listener(tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    return s, path


def test_ready_status_watchdog_stopping_reach_the_socket(tmp_path):
    sock, path = _listener(tmp_path)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.enabled and n.watchdog_s == 20.0
    assert n.ready(status="running")
    assert sock.recv(1024) == b"READY=1\nSTATUS=running"
    n.watchdog()
    assert sock.recv(1024) == b"WATCHDOG=1"
    n.status("uplink down")
    assert sock.recv(1024) == b"STATUS=uplink down"
    n.stopping()
    assert sock.recv(1024) == b"STOPPING=1"
    n.close()


def test_abstract_namespace_socket(tmp_path):
    name = f"cg-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": "@" + name})
    assert n.ready()
    assert s.recv(64) == b"READY=1"


def test_without_notify_socket_nothing_is_sent_and_nothing_fails():
    n = Notifier({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False


def test_watchdog_for_another_pid_is_ignored():
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_s is None
    assert n.ready() is False  # socket missing: reported, not raised
