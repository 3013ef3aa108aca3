"""SMS text, recipients, policy and per-recipient rate limit. Sending itself is ActionContext.send_sms.

Text comes from config templates, e.g.
`【社区消防】12月1日03:12 新鸿社区3号院2栋1单元401室（独居老人） 烟感报警，请立即联系老人或拨打119`.
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections import deque
from typing import Any

from gateway.actions.schema import Notify, Sms
from gateway.model import Alarm, ContactRole, Device, DeviceType, ResidentCategory, Severity

SEVERITY_WORD = {Severity.CRITICAL: "紧急", Severity.MAJOR: "重要", Severity.MINOR: "一般", Severity.INFO: "提示"}
TIER_WORD = "一二三四五六七八九十"
# Template placeholders (rules/check.py rejects any other). {date}/{time}: a delayed SMS that says only
# "17:58" misleads, so the default templates carry the date; {room}: the place with 室 (2栋1单元401室);
# {resident}: "（独居老人）" / "（残疾人）" / "" so a reader knows nobody else may be home; {advice}: what to do now.
PLACEHOLDERS = frozenset({"community", "courtyard", "place", "room", "title", "date", "time", "device", "severity",
                          "tier", "resident", "advice"})
RESIDENT_WORD = {ResidentCategory.ELDERLY_ALONE: "（独居老人）", ResidentCategory.DISABLED: "（残疾人）"}
# Per device type: gas first (a spark from a switch ignites it), then people (issue 18).
ADVICE = {
    DeviceType.GAS: "请立即联系住户，开窗通风、勿开关电器、勿用明火，必要时拨打119",
    DeviceType.SMOKE: "请立即联系老人或拨打119",
    DeviceType.WATER_FLOW: "请立即核实火情，必要时拨打119",  # the riser flows: fire confirmed with a smoke alarm
}
ADVICE_DEFAULT = "请立即处置"


def policy_allows(cfg: Sms, severity: Severity, uplink_down_for_s: float) -> bool:
    """Per severity: "always"; "uplink_down" only once the uplink has been down > uplink_down_after_s."""
    policy = getattr(cfg, Severity(severity).name.lower())
    if policy == "always":
        return True
    return policy == "uplink_down" and uplink_down_for_s > cfg.uplink_down_after_s


def recipients(roles: tuple[ContactRole, ...], device: Device | None, contacts: list[Any]) -> list[Any]:
    """Contacts of a tier, in the tier's role order: `relative` means the device's own contacts."""
    by_id = {c.id: c for c in contacts}
    out: list[Any] = []
    for role in roles:
        if role == ContactRole.RELATIVE:
            chosen = [by_id[c] for c in (device.contacts if device else ()) if c in by_id]
        else:
            chosen = [c for c in contacts if c.role == role]
        out += [c for c in chosen if c not in out]
    return out


def render(
    template: str, notify: Notify, alarm: Alarm, device: Device | None, identity: Any, tier: int, minutes_ago: float
) -> str:
    """Fill a template. With an unsynced wall clock the time is given as "N分钟前" from monotonic time,
    never as a wrong clock time (a Pi has no RTC until NTP syncs)."""
    if alarm.raised.clock_synced:
        when = datetime.datetime.fromtimestamp(alarm.raised.wall_s, zoneinfo.ZoneInfo(notify.timezone))
        time_text = when.strftime("%H:%M")
        date_text = f"{when.month}月{when.day}日"
    else:
        time_text = "刚刚" if minutes_ago < 1 else f"{int(minutes_ago)}分钟前"
        date_text = ""  # unknown without a synced clock; "N分钟前" says enough
    place = device.location.label() if device else ""
    room = place + "室" if device is not None and device.location.room and not device.location.room.endswith("室") else place
    resident = RESIDENT_WORD.get(ResidentCategory(device.resident), "") if device else ""
    advice = ADVICE.get(DeviceType(device.type), ADVICE_DEFAULT) if device else ADVICE_DEFAULT
    if device is not None and device.type == DeviceType.SMOKE and not resident:
        advice = "请立即处置或拨打119"  # no elderly resident to call
    return template.format(
        community=getattr(identity, "community", ""),
        courtyard=getattr(identity, "courtyard", ""),
        place=place or alarm.device_id,
        room=room or alarm.device_id,
        title=alarm.title,
        date=date_text,
        time=time_text,
        resident=resident,
        advice=advice,
        device=alarm.device_id,
        severity=SEVERITY_WORD[Severity(alarm.severity)],
        tier=TIER_WORD[min(tier, len(TIER_WORD) - 1)],
    )


class RateLimiter:
    """Per recipient: at most one SMS every min_interval_s and max_per_hour in any sliding hour."""

    def __init__(self, min_interval_s: float, max_per_hour: int) -> None:
        self.min_interval_s = min_interval_s
        self.max_per_hour = max_per_hour
        self._sent: dict[str, deque[float]] = {}

    def allow(self, number: str, now: float) -> bool:
        sent = self._sent.setdefault(number, deque())
        while sent and now - sent[0] >= 3600:
            sent.popleft()
        if sent and now - sent[-1] < self.min_interval_s:
            return False
        if len(sent) >= self.max_per_hour:
            return False
        sent.append(now)  # reserved now, so two alarms at once cannot both pass
        return True

    def next_allowed(self, number: str, now: float) -> float | None:
        """When `allow` will next say yes for this number, or None while the hourly cap is reached."""
        sent = self._sent.get(number)
        if not sent:
            return now
        if len(sent) >= self.max_per_hour:
            return None
        return max(now, sent[-1] + self.min_interval_s)

    def release(self, number: str, at: float) -> None:
        """The send reserved at `at` failed: it does not count against the recipient."""
        sent = self._sent.get(number)
        if sent and at in sent:
            sent.remove(at)
