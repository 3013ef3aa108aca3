"""Runs verified downlink commands and relayed reports, and decides the reply to every message.

Every message on .../cmd and .../relay gets exactly one reply on .../reply: accepted (with the
handler's result), rejected (with a reason word) or failed (the handler broke). Nothing unverified runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from gateway.errors import CommandRejected, GatewayError
from gateway.uplink.commands import NonceCache, Verifier, peek_id

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
RelayHandler = Callable[[dict[str, Any]], Awaitable[None]]

# The first command set; later issues register more through the daemon's handler dict.
BASE_COMMANDS = ("ping", "get_status", "ack_alarm", "silence", "poll_now", "set_log_level")


class Reply(msgspec.Struct, frozen=True):
    id: str
    command: str
    status: str  # accepted | rejected | failed
    reason: str = ""
    result: dict[str, Any] = {}


class Dispatcher:
    def __init__(self, verifier: Verifier, nonces: NonceCache, handlers: dict[str, Handler],
                 relay_handler: RelayHandler | None, status_provider: Callable[[], dict[str, Any]], clock: Any, log: Any) -> None:
        self.verifier = verifier
        self.nonces = nonces
        self.relay_handler = relay_handler
        self.clock = clock
        self.log = log
        builtin: dict[str, Handler] = {"ping": self._ping, "get_status": self._get_status}
        self.handlers: dict[str, Handler] = {**builtin, **handlers}
        self._status_provider = status_provider
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self.failed = 0

    async def _ping(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "wall_s": self.clock.wall(), "clock_synced": self.clock.synced()}

    async def _get_status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._status_provider()

    def refuse(self, reason: str, detail: str) -> Reply:
        """A message refused unread (oversized, queue full): counted like any other rejection."""
        return self._rejected("", "", CommandRejected(reason, detail), 0)

    async def handle(self, relay: bool, payload: bytes) -> Reply:
        """Verify and run one downlink message: always exactly one Reply, never raises (issue 16)."""
        try:
            return await self._handle(relay, payload)
        except Exception as exc:  # noqa: BLE001 - "one reply per message" must hold even for a verifier bug
            self.failed += 1
            self.log.error("command_verify_crashed", error=type(exc).__name__, bytes=len(payload), exc_info=True)
            cmd_id, command = peek_id(payload)
            return Reply(cmd_id, command, "failed", "internal_error", {"detail": type(exc).__name__})

    async def _handle(self, relay: bool, payload: bytes) -> Reply:
        try:
            cmd = self.verifier.verify(payload)
            if relay != (cmd.command == "relay"):
                raise CommandRejected("wrong_topic", "relay reports go to .../relay, commands to .../cmd")
            if relay and self.relay_handler is None:
                raise CommandRejected("relay_unsupported", "this gateway takes no relayed reports")
            if not relay and cmd.command not in self.handlers:
                raise CommandRejected("unknown_command", f"{cmd.command[:40]!r}")
            await self.nonces.claim(cmd, self.clock.wall())  # last: only a fully valid command burns its nonce
        except CommandRejected as exc:
            cmd_id, command = peek_id(payload)
            return self._rejected(cmd_id, command, exc, len(payload))
        self.log.info("command_accepted", id=cmd.id, command=cmd.command, key_id=cmd.key_id)
        try:
            if relay and self.relay_handler is not None:
                await self.relay_handler(cmd.args)
                result: dict[str, Any] = {}
            else:
                result = await self.handlers[cmd.command](cmd.args)
        except CommandRejected as exc:
            return self._rejected(cmd.id, cmd.command, exc, len(payload))
        except GatewayError as exc:
            self.failed += 1
            self.log.warning("command_failed", id=cmd.id, command=cmd.command, error=str(exc))
            return Reply(cmd.id, cmd.command, "failed", type(exc).__name__, {"detail": str(exc)[:200]})
        except Exception as exc:  # noqa: BLE001 - a handler bug must not take the uplink down; it is reported
            self.failed += 1
            self.log.error("command_handler_crashed", id=cmd.id, command=cmd.command, exc_info=True)
            return Reply(cmd.id, cmd.command, "failed", "handler_error", {"detail": type(exc).__name__})
        self.accepted += 1
        return Reply(cmd.id, cmd.command, "accepted", "", result if isinstance(result, dict) else {"result": result})

    def _rejected(self, cmd_id: str, command: str, exc: CommandRejected, size: int) -> Reply:
        first = exc.reason not in self.rejected
        self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
        # First of each reason at WARNING, repeats at DEBUG (a flood must not flood the journal); counts in health().
        (self.log.warning if first else self.log.debug)("command_rejected", reason=exc.reason, detail=exc.detail, id=cmd_id, command=command, bytes=size)
        return Reply(cmd_id, command, "rejected", exc.reason, {"detail": exc.detail[:200]} if exc.detail else {})

    def health(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "failed": self.failed, "rejected": dict(self.rejected)}
