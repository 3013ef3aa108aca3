"""Reconnect timing: the cheap TCP probe, jittered exponential backoff and the reconnect-delay histogram.

CLARIFICATIONS "Reconnect": probe at least every 2 s while disconnected; the full (TLS +) MQTT connect
runs with backoff capped at reconnect_cap_s only once the probe succeeds, and the backoff resets then.
"""

from __future__ import annotations

import asyncio
import bisect
import socket

from gateway.clock import Backoff as Backoff  # re-exported: one backoff policy for every retry loop


class Histogram:
    """Counts of durations in fixed buckets (upper bounds in seconds), for status and the fleet test."""

    BOUNDS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS_S) + 1)
        self.total = 0
        self.max_s = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.BOUNDS_S, seconds)] += 1
        self.total += 1
        self.max_s = max(self.max_s, seconds)

    def snapshot(self) -> dict[str, object]:
        labels = [f"le_{b:g}s" for b in self.BOUNDS_S] + ["inf"]
        return {"buckets": dict(zip(labels, self.counts)), "count": self.total, "max_s": round(self.max_s, 3)}


async def probe(host: str, port: int, timeout_s: float) -> bool:
    """A plain TCP connect to the broker port: True if something accepts. No TLS, no MQTT."""
    return not await probe_reason(host, port, timeout_s)


async def probe_reason(host: str, port: int, timeout_s: float) -> str:
    """The probe, saying why it failed: "" (accepted), "host_unresolvable" or "broker_unreachable".

    An unresolvable name is an installer's fault (issue 15 item 3), a refused port is the broker's.
    """
    try:
        async with asyncio.timeout(timeout_s):  # not wait_for: it can swallow a cancellation on 3.11 (gh-86296)
            _reader, writer = await asyncio.open_connection(host, port)
    except (socket.gaierror, UnicodeError):  # UnicodeError: the IDNA codec refuses the name (label > 63 chars)
        return "host_unresolvable"
    except (OSError, TimeoutError):
        return "broker_unreachable"
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return ""


def parse_server_reference(reference: str, default_port: int) -> tuple[str, int] | None:
    """MQTT v5 §4.11 Server Reference, first entry of "host[:port] host2..." (the form EMQX and HiveMQ send)."""
    first = reference.split()[0] if reference.split() else ""
    host, _, port = first.rpartition(":") if first.count(":") == 1 else (first, "", "")
    try:
        return (host, int(port)) if port else ((first, default_port) if first else None)
    except ValueError:
        return None
