"""Reconnect timing: jittered exponential backoff within its bounds, auth errors at the cap, the probe."""

import asyncio
import random
import socket

from gateway.uplink.reconnect import Backoff, Histogram, probe
from tests.support.broker import free_port


def test_backoff_grows_exponentially_with_jitter_and_stays_under_the_cap():
    b = Backoff(1.0, 30.0, random.Random(7))
    delays = [b.next_delay() for _ in range(12)]
    for n, d in enumerate(delays):
        top = min(30.0, 2.0 ** n)
        assert top / 2 <= d <= top
    assert max(delays) <= 30.0 and len({round(d, 6) for d in delays[6:]}) > 1  # jittered at the cap


def test_auth_error_goes_straight_to_the_cap_and_reset_starts_over():
    b = Backoff(1.0, 30.0, random.Random(1))
    b.to_cap()
    assert b.next_delay() >= 15.0
    b.reset()
    assert b.next_delay() <= 1.0
    assert 0 <= b.first_jitter() <= 0.5


def test_histogram_buckets_delays():
    h = Histogram()
    for s in (0.2, 0.7, 1.5, 45.0, 1000.0):
        h.add(s)
    snap = h.snapshot()
    assert snap["count"] == 5 and snap["max_s"] == 1000.0
    assert snap["buckets"]["le_0.5s"] == 1 and snap["buckets"]["le_1s"] == 1 and snap["buckets"]["le_60s"] == 1 and snap["buckets"]["inf"] == 1


def test_probe_tells_a_listening_port_from_a_closed_one():
    async def main():
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        up = await probe("127.0.0.1", srv.getsockname()[1], 1.0)
        srv.close()
        down = await probe("127.0.0.1", free_port(), 1.0)
        return up, down
    assert asyncio.run(main()) == (True, False)


def test_down_for_counts_from_the_last_connected_moment_not_from_each_state_change():
    """The rule engine's "SMS only when the uplink has been down > N s" reads this."""
    from gateway.clock import ManualClock
    from gateway.uplink.client import ConnState
    from tests.integration.uplink_support import make_uplink
    from tests.unit.uplink_fakes import FakeOutbox

    clock = ManualClock()
    up = make_uplink("mqtt://127.0.0.1:1", FakeOutbox(), clock)
    clock.advance(5)
    assert up.down_for_s() == 5.0  # never connected: down since start
    up._set_state(ConnState.CONNECTED)
    assert up.down_for_s() == 0.0
    clock.advance(10)
    up._set_state(ConnState.PROBING)
    clock.advance(3)
    up._set_state(ConnState.BACKOFF)  # more state changes while down do not restart the count
    clock.advance(4)
    up._set_state(ConnState.CONNECTING)
    clock.advance(1)
    assert up.down_for_s() == 8.0
