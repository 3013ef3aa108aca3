"""The `[gb26875]` config section: the district centre's address, our addresses, and the protocol's timers.

GB/T 26875.3 leaves ack timeout and retry count to the installation (§6.5 parameters not in our sources):
both are configurable; defaults are what centres commonly use (10 s is too slow for a fire alarm retry).
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated

import msgspec
from msgspec import Meta

Address48 = Annotated[int, Meta(ge=0, le=(1 << 48) - 1)]
PartAddress = Annotated[int, Meta(ge=0, le=0xFFFFFFFF)]


class GB26875Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    host: str = ""  # the centre's IP or DNS name
    port: Annotated[int, Meta(ge=0, le=65535)] = 0
    # 用户信息传输装置 address as registered at the centre, and the centre's own address (6 bytes each).
    source_address: Address48 = 0
    destination_address: Address48 = 0
    # Time tags are in the centre's local time (protocols.md §5: the verified frame is UTC+8).
    timezone: str = "Asia/Shanghai"
    system_address: Annotated[int, Meta(ge=0, le=255)] = 1
    connect_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 5.0
    ack_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 3.0
    retries: Annotated[int, Meta(ge=0, le=10)] = 3
    heartbeat_period_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    reconnect_base_s: Annotated[float, Meta(gt=0, le=30)] = 1.0
    reconnect_cap_s: Annotated[float, Meta(ge=1, le=600)] = 30.0
    # Analog values (type 3) at most this often per part and parameter: readings in between are done
    # for this uplink without being sent (the centre wants trends, not our poll rate).
    analog_period_s: Annotated[float, Meta(ge=0, le=86400)] = 60.0
    # 查岗 answer window when the centre's request gives none (0 minutes).
    operator_check_window_s: Annotated[float, Meta(gt=0, le=3600)] = 600.0
    operator_number: Annotated[int, Meta(ge=0, le=255)] = 1
    # Part addresses as registered at the centre: "device_id" or "device_id/sub" (pump1, pump2, tank).
    # Unlisted parts get a stable address derived from the name (CRC-32), shown by the mapping docs.
    part_addresses: dict[str, PartAddress] = {}

    def __post_init__(self) -> None:
        if self.enabled and (not self.host or not self.port):
            raise ValueError("host and port are required when enabled")
        if self.reconnect_cap_s < self.reconnect_base_s:
            raise ValueError("reconnect_cap_s must be >= reconnect_base_s")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None

    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)
