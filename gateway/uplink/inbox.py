"""The bounded downlink queue: messages on .../cmd and .../relay wait here for the one command worker.

Issue 15 item 6: 3,000 unsigned 30 KB commands, each in its own task, slowed alarm_raised ~9x. Now paho's
callback only appends to a bounded deque (O(1), no parsing); oversized payloads are refused there unread;
a full queue refuses with reason `busy`; one worker answers the rest one at a time, yielding to the loop
between messages, so a flood costs the alarm path at most one message's verification (a few ms).
Refusals made here are answered at most REFUSAL_REPLIES_PER_S per second; beyond that they are counted
(`refusals_unanswered`), the one exception to "one reply per message" (docs/uplink.md "Commands").
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from gateway.clock import Clock
from gateway.uplink.commands import MAX_COMMAND_BYTES
from gateway.uplink.dispatch import Dispatcher, Reply

REFUSAL_REPLIES_PER_S = 10.0  # a flood cannot turn into a reply flood towards the broker
REFUSAL_BURST = 20.0


class CommandInbox:
    """One bounded FIFO and its worker; `reply` publishes a Reply (or drops it while offline)."""

    def __init__(self, dispatcher: Dispatcher, reply: Callable[[Reply], None], max_queue: int, clock: Clock, log: object) -> None:
        self.dispatcher = dispatcher
        self._reply = reply
        self.max_queue = max_queue
        self.clock = clock
        self.log = log
        self._queue: collections.deque[tuple[bool, bytes]] = collections.deque()
        self._ready = asyncio.Event()
        self._tokens = REFUSAL_BURST
        self._tokens_at = clock.monotonic()
        self.received = 0
        self.refused_oversized = 0
        self.refused_busy = 0
        self.refusals_unanswered = 0
        self.max_depth = 0

    def offer(self, relay: bool, payload: bytes) -> None:
        """From paho's on_message (loop thread): queue or refuse, never parse."""
        self.received += 1
        if len(payload) > MAX_COMMAND_BYTES:
            self.refused_oversized += 1
            self._refuse("oversized", f"{len(payload)} bytes > {MAX_COMMAND_BYTES}")
        elif len(self._queue) >= self.max_queue:
            self.refused_busy += 1
            self._refuse("busy", f"{self.max_queue} commands already waiting")
        else:
            self._queue.append((relay, payload))
            self.max_depth = max(self.max_depth, len(self._queue))
            self._ready.set()

    def _refuse(self, reason: str, detail: str) -> None:
        now = self.clock.monotonic()
        self._tokens = min(REFUSAL_BURST, self._tokens + (now - self._tokens_at) * REFUSAL_REPLIES_PER_S)
        self._tokens_at = now
        if self._tokens < 1:
            self.refusals_unanswered += 1
            return
        self._tokens -= 1
        # Nothing was parsed: the reply cannot name the command's id (the platform re-sends on no match).
        self._reply(self.dispatcher.refuse(reason, detail))

    async def run(self) -> None:
        """Answer queued messages one by one until cancelled."""
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            relay, payload = self._queue.popleft()
            self._reply(await self.dispatcher.handle(relay, payload))
            await asyncio.sleep(0)  # let an alarm that arrived meanwhile run before the next message

    def health(self) -> dict[str, int]:
        return {"received": self.received, "queued": len(self._queue), "queue_max": self.max_queue, "max_depth": self.max_depth,
                "refused_oversized": self.refused_oversized, "refused_busy": self.refused_busy,
                "refusals_unanswered": self.refusals_unanswered}
