"""What the actions need from the daemon, and nothing more: the actuator path, the modem, the uplink's state."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gateway.model import Command


@runtime_checkable
class ActionContext(Protocol):
    async def actuate(self, command: Command) -> None:
        """Write a relay-box output (sounder, strobe) through its driver; raise a GatewayError on failure."""

    async def send_sms(self, number: str, text: str, urgent: bool = False) -> None:
        """Send one SMS through the Cat-1 module; raise gateway.errors.ModemUnavailable when it cannot now.
        urgent (a critical alarm's): ahead of other work on the module, ending a preemptible call."""

    def uplink_down_for_s(self) -> float:
        """Seconds the uplink has been disconnected (0.0 while connected), by monotonic time."""

    def notify_uplink(self) -> None:
        """An alarm was committed: try to reconnect now instead of waiting out the backoff."""
