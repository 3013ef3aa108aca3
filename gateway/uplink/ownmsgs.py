"""The uplink's own messages, which are not outbox records: the retained status and the command replies.

They are published on the current session and tracked by their PUBACK futures (so a clean stop can wait
for the "offline" status); they are never queued while offline: status is re-sent on connect and a lost
reply is re-asked by the platform (docs/uplink.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.clock import Clock
from gateway.errors import UplinkError
from gateway.uplink.dispatch import Reply
from gateway.uplink.session import Session
from gateway.uplink.wire import Envelope


class OwnMessages:
    def __init__(self, env: Envelope, clock: Clock, session: Callable[[], Session | None]) -> None:
        self.env = env
        self.clock = clock
        self._session = session  # the uplink's current session, or None while disconnected
        self._acks: dict[int, asyncio.Future[int]] = {}

    def on_publish(self, mid: int, rc: int) -> bool:
        """A PUBACK: True if it was for one of ours (else it belongs to the drainer)."""
        fut = self._acks.pop(mid, None)
        if fut is None:
            return False
        if not fut.done():
            fut.set_result(rc)
        return True

    def session_lost(self) -> None:
        for fut in self._acks.values():
            if not fut.done():
                fut.set_result(-1)
        self._acks.clear()

    def _publish(self, session: Session, topic: str, payload: bytes, retain: bool = False) -> int | None:
        try:
            mid = session.publish(topic, payload, retain=retain)
        except UplinkError:
            return None  # not connected: see the module docstring
        self._acks[mid] = asyncio.get_running_loop().create_future()
        return mid

    def status(self, online: bool, fields: dict[str, Any], session: Session | None = None) -> int | None:
        """Publish the retained status on `session` (default: the current one); returns the mid."""
        session = session or self._session()
        if session is None:
            return None
        msg = self.env.status(self.clock.boot_id, self.clock.now(), online, fields)
        return self._publish(session, msg.topic, msg.payload, retain=True)

    async def wait_acked(self, mid: int | None, timeout_s: float) -> None:
        fut = self._acks.get(mid) if mid is not None else None
        if fut is not None:
            await asyncio.wait([fut], timeout=timeout_s)

    def reply(self, reply: Reply) -> None:
        session = self._session()
        if session is not None:
            msg = self.env.reply(self.clock.boot_id, self.clock.now(), reply.id, reply.command, reply.status, reply.reason, reply.result)
            self._publish(session, msg.topic, msg.payload)
