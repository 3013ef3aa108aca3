"""The `[selfcheck]` config section: when the daily self-check runs, and the quiet hours.

GB 26875.1 §4.1 asks for a self-check every day; issue 23 asks for no audible output at night: the daily
check itself is silent, and the optional sounder pulse is refused by config check inside quiet hours.
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated

import msgspec
from msgspec import Meta

HHMM = Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


def minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class SelfCheckSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    daily_at: HHMM = "10:00"  # local time of the centre's zone, a weekday-morning hour when people are about
    timezone: str = "Asia/Shanghai"
    quiet_hours: Annotated[str, Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$")] = "21:00-08:00"
    sounder_pulse: bool = False  # pulse the guard-room sounder as part of the check (audible: never in quiet hours)
    sounder_pulse_s: Annotated[float, Meta(gt=0, le=10)] = 1.0
    # A fire test alarm is cleared by itself after this long (it must not stay active on the platform).
    fire_test_clear_after_s: Annotated[float, Meta(ge=1, le=600)] = 30.0
    # `gateway test power`: how long to wait for mains to be cut and to come back.
    power_test_window_s: Annotated[float, Meta(ge=10, le=1800)] = 300.0
    journal_path: str = ""  # "" = tests.jsonl beside store.path

    def __post_init__(self) -> None:
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not a known IANA zone") from None
        if self.sounder_pulse and self.in_quiet_hours(minutes(self.daily_at)):
            raise ValueError(f"daily_at {self.daily_at} is inside quiet_hours {self.quiet_hours}: "
                             "a sounder pulse would be audible at night")

    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def in_quiet_hours(self, minute_of_day: int) -> bool:
        a, b = (minutes(p) for p in self.quiet_hours.split("-"))
        return a <= minute_of_day < b if a <= b else (minute_of_day >= a or minute_of_day < b)
