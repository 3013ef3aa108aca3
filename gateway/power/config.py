"""The `[power]` config section: where upsd is, which UPS, how fast a change must be seen, what to do on LB.

No `[power]` section (or `ups = ""`) means the gateway has no UPS: the monitor reports state "off" and
selftest WARNs; that is a supported installation, not an error.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta


class PowerSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    # The UPS name as in upsd's ups.conf ([pihat] -> "pihat"); empty: no UPS on this gateway.
    ups: Annotated[str, Meta(max_length=64)] = ""
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 3493  # IANA port of the NUT protocol
    username: str = ""  # only needed for INSTCMD on shutdown; reading needs no login
    # The upsd.users password lives in its own file (mode 0600), never in this config (house rule: secrets
    # are not in the main config).
    password_file: str = ""
    # Issue 23 / GB 26875.1 §4.1: a mains or backup-power fault is signalled within 100 s of the change.
    deadline_s: Annotated[float, Meta(gt=0, le=100)] = 30.0
    # How often upsd is asked. One read takes at most 2 * timeout_s (aionut retries a failed connection
    # once). Worst case from a flag change at upsd to our event: poll_period_s + 2 * timeout_s. An
    # unreadable UPS is a fault at the 2nd failed read in a row: 2 * (poll_period_s + 2 * timeout_s),
    # which must fit in deadline_s (checked below).
    poll_period_s: Annotated[float, Meta(ge=0.2, le=60)] = 5.0
    timeout_s: Annotated[float, Meta(gt=0, le=30)] = 2.5
    # On "OB LB": flush the store, tell the platform, then run this (argv, no shell).
    poweroff_command: tuple[str, ...] = ("systemctl", "poweroff")
    shutdown_on_low_battery: bool = True
    # Optional NUT instant command sent before powering off so the UPS cuts and later restores its
    # output (e.g. "shutdown.return"): without it a Pi halted on battery stays off when mains returns
    # before the battery is flat. Needs username + password_file with `instcmds` in upsd.users.
    return_instcmd: str = ""

    def __post_init__(self) -> None:
        worst_s = 2 * (self.poll_period_s + 2 * self.timeout_s)
        if worst_s > self.deadline_s:
            raise ValueError(f"2 * (poll_period_s + 2 * timeout_s) = {worst_s:g} s exceeds deadline_s "
                             f"({self.deadline_s:g}): a lost UPS could be signalled too late")
        if not self.poweroff_command:
            raise ValueError("poweroff_command must not be empty")

    @property
    def configured(self) -> bool:
        return bool(self.ups)
