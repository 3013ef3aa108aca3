"""Reading one UPS from upsd over the NUT network protocol (TCP 3493), through aionut.

Why aionut and not PyNUTClient: PyNUTClient (NUT's own binding) is synchronous and would need a thread
beside our single asyncio loop; aionut (Home Assistant's NUT integration uses it) is pure Python, asyncio,
typed, without dependencies, and speaks the same documented text protocol (`LIST VAR <ups>` ->
`BEGIN LIST VAR` / `VAR <ups> <name> "<value>"` / `END LIST VAR`; errors `ERR <code>`, e.g.
`ERR DATA-STALE` when the driver lost the UPS, `ERR UNKNOWN-UPS`). One LIST VAR per poll gives status,
charge and runtime in one consistent snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

from aionut import AIONUTClient, NUTCommandError, NUTError

from gateway.errors import TransientError


class UpsUnreadable(TransientError):
    """upsd did not give us the UPS's variables: `reason` is "unreachable", "data_stale", "unknown_ups"..."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class UpsReading:
    """One snapshot of the variables we use (NUT variable names in comments)."""

    flags: frozenset[str]  # ups.status split on spaces: OL, OB, LB, RB, CHRG, DISCHRG, BYPASS, OFF, FSD...
    charge_pct: float | None  # battery.charge
    runtime_s: float | None  # battery.runtime
    raw_status: str

    @classmethod
    def from_vars(cls, values: dict[str, str]) -> "UpsReading":
        status = values.get("ups.status", "")
        return cls(frozenset(status.split()), _number(values.get("battery.charge")),
                   _number(values.get("battery.runtime")), status)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None  # a UPS that reports garbage loses that field, not the whole reading


class NutSource:
    """A persistent connection to upsd; `read()` raises UpsUnreadable, never aionut's own errors."""

    def __init__(self, host: str, port: int, ups: str, timeout_s: float, username: str = "", password: str = "") -> None:
        self.ups = ups
        self._client = AIONUTClient(host, port, username or None, password or None, timeout=timeout_s, persistent=True)

    async def read(self) -> UpsReading:
        try:
            values = await self._client.list_vars(self.ups)
        except NUTError as exc:
            text = str(exc) or type(exc).__name__
            # upsd's error words (NUT developer guide, network protocol, "Error responses").
            for word, reason in (("DATA-STALE", "data_stale"), ("UNKNOWN-UPS", "unknown_ups"),
                                 ("DRIVER-NOT-CONNECTED", "driver_not_connected"), ("ACCESS-DENIED", "access_denied")):
                if word in text:
                    raise UpsUnreadable(reason, text) from None
            raise UpsUnreadable("command_error" if isinstance(exc, NUTCommandError) else "unreachable", text) from None
        except OSError as exc:  # not every socket error is wrapped by aionut
            raise UpsUnreadable("unreachable", str(exc)) from None
        status = values.get("ups.status", "").split()
        if not status:
            raise UpsUnreadable("no_status", f"{self.ups} reports no ups.status")
        if status == ["WAIT"]:
            # upsd's placeholder until the driver has sent its first full dump (seen right after an upsd
            # restart): nothing is known yet, which is not "mains lost".
            raise UpsUnreadable("waiting_for_driver", "ups.status WAIT")
        return UpsReading.from_vars(values)

    async def instcmd(self, command: str) -> None:
        """INSTCMD (needs a login with `instcmds` in upsd.users)."""
        try:
            await self._client.run_command(self.ups, command)
        except (NUTError, OSError) as exc:
            raise UpsUnreadable("instcmd_failed", f"{command}: {exc}") from None

    def close(self) -> None:
        self._client.disconnect()
