"""Free loopback ports for test servers (mosquitto, upsd, the panel, UDP forwarders), chosen so that nothing
else takes them between the choice and the server's bind.

bind(0) hands out a port from the kernel's ephemeral range, and so does every outgoing connection or UDP
socket: with several test runs on the machine, a port found free was seen taken by someone's client a
moment later ("address already in use" from the panel). These come from just below that range, where the
kernel never picks, starting at a random place in this xdist worker's own slice, never twice a run.
"""

from __future__ import annotations

import os
import random
import socket

_SLICE = 1500  # ports per xdist worker (gw0 .. gw7 fit below the default ephemeral range)
_given: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    n = int(worker) if worker.isdigit() else 0
    top = _ephemeral_low() - (n % 8) * _SLICE
    return range(max(1024, top - _SLICE), top)


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(udp: bool = False) -> int:
    """A 127.0.0.1 port nobody listens on (TCP, or UDP with udp=True), not handed out before in this run."""
    ports = _slice()
    start = random.randrange(len(ports))
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        if port not in _given and _bindable(port, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM):
            _given.add(port)
            return port
    raise RuntimeError(f"no free port in {ports}")
