"""A stop is a cancellation, and it must never be lost (issue 16: an NB-IoT driver that did not stop within
10 s under load). On Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives in the same loop
iteration as the completion of what it waits for (gh-86296); the AT channel's wait must not."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from drivers.cellular.channel import AtChannel
from drivers.cellular.commands import Timeouts


def _channel() -> AtChannel:
    return AtChannel(structlog.get_logger("test"), Timeouts(), lambda u: None, lambda b: None)


async def test_a_cancel_landing_with_the_answer_is_not_swallowed():
    ch = _channel()
    for _ in range(50):
        fut = asyncio.get_running_loop().create_future()
        waiter = asyncio.create_task(ch._wait(fut, "AT+CSQ", 5.0))
        await asyncio.sleep(0)  # the waiter is now suspended on the answer
        fut.set_result("answer")  # the modem's answer completes...
        waiter.cancel()  # ...in the same loop iteration as the daemon's stop
        with pytest.raises(asyncio.CancelledError):
            await waiter


async def test_the_answer_is_returned_and_silence_is_a_timeout():
    ch = _channel()
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, "done")
    assert await ch._wait(fut, "AT", 1.0) == "done"
    with pytest.raises(TimeoutError):
        await ch._wait(asyncio.get_running_loop().create_future(), "AT", 0.05)
    assert ch.counters["timeouts"] == 1 and ch._dirty  # the next command settles the line first


async def test_the_counter_flusher_stops_even_when_an_alarm_urges_it_at_that_moment():
    # drivers/counters.py: the NB-IoT driver in relay mode did not stop when the stop met an alarm's
    # urgent flush (seen as a 10 s hang in tests/integration/test_cellular_nbiot_edges.py).
    from drivers.counters import CounterStore

    for _ in range(20):
        store = CounterStore(None, "nbiot", structlog.get_logger("test"))
        flusher = asyncio.create_task(store.run())
        await asyncio.sleep(0)  # waiting for the interval or an urgent flush
        store._urgent.set()  # an alarm frame urges a flush...
        flusher.cancel()  # ...as the daemon stops
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(flusher, 5)
