"""Reconnect timing: the cheap TCP probe, jittered exponential backoff and the reconnect-delay histogram.

CLARIFICATIONS "Reconnect": probe at least every 2 s while disconnected; the full (TLS +) MQTT connect
runs with backoff capped at reconnect_cap_s only once the probe succeeds, and the backoff resets then.
"""

from __future__ import annotations

import asyncio
import bisect
import random


class Backoff:
    """min(base * 2**tries, cap) with equal jitter (half fixed, half random).

    Jitter spreads a fleet of gateways reconnecting after a broker restart (reliability §7 R19);
    paho's own backoff doubles 1 -> 120 s without any (reliability §0.6).
    """

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.tries = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        return min(self.cap_s, self.base_s * (2 ** min(self.tries, 30)))

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one more failed attempt."""
        top = self.ceiling()
        self.tries += 1
        return top / 2 + self._rng.uniform(0, top / 2)

    def to_cap(self) -> None:
        """Auth errors: retrying sooner cannot help (aioesphomeapi reconnect_logic: straight to the cap)."""
        while self.base_s * (2 ** self.tries) < self.cap_s and self.tries < 30:
            self.tries += 1

    def reset(self) -> None:
        self.tries = 0

    def first_jitter(self) -> float:
        """Small random wait before the first attempt after the broker is seen back (fleet spread)."""
        return self._rng.uniform(0, min(0.5, self.base_s / 2))


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
    """A plain TCP connect to the broker port: True if something accepts. No TLS, no MQTT.

    A yes/no answer by design: the reason a probe failed is not actionable (the connect reports it).
    """
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True
