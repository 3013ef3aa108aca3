"""Optional bridge to an upstream network server (a district ChirpStack): every datagram the forwarder
sends is copied verbatim upstream, and the upstream's PULL_RESP downlinks are passed to the forwarder.
The local network server never waits for it: the bridge being down changes nothing on the alarm path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from drivers.lorawan import gwmp


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, bridge: "Bridge") -> None:
        self.bridge = bridge

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.bridge.from_upstream(data)

    def error_received(self, exc: Exception) -> None:  # upstream unreachable (ICMP): counted, not fatal
        self.bridge.counters["bridge_errors"] += 1


class Bridge:
    def __init__(self, upstream: str, to_forwarder: Callable[[bytes], None]) -> None:
        host, _, port = upstream.rpartition(":")
        self.address = (host, int(port))
        self.to_forwarder = to_forwarder
        self.counters = {"bridge_up": 0, "bridge_down": 0, "bridge_errors": 0}
        self.error = ""
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        """Connect the upstream socket; on failure (unresolvable name) keep `error` and retry on next use."""
        try:
            self._transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                lambda: _Proto(self), remote_addr=self.address)
            self.error = ""
        except OSError as exc:
            self.error = f"upstream {self.address[0]}:{self.address[1]}: {exc.strerror or exc}"

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def to_upstream(self, datagram: bytes) -> None:
        if self._transport is not None:
            self._transport.sendto(datagram)
            self.counters["bridge_up"] += 1

    def from_upstream(self, data: bytes) -> None:
        # Only downlinks go on: the forwarder already has our PUSH_ACK/PULL_ACK for each of its datagrams.
        if len(data) >= 4 and data[0] in gwmp.VERSIONS and data[3] == gwmp.Ident.PULL_RESP:
            self.to_forwarder(data)
            self.counters["bridge_down"] += 1
