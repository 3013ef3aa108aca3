"""The `[notify]` config: guard-room sounder, SMS templates and policy, escalation tiers.

Units in key names; every key has the safe default a courtyard would start with.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from gateway.model import ContactRole

Seconds = Annotated[float, Meta(ge=0, le=7 * 86400)]
SmsPolicy = Literal["always", "uplink_down", "never"]
TierAction = Literal["sms", "call"]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Subclasses say `frozen=True` again: msgspec inherits it, type checkers do not (msgspec#657)."""


class Sounder(_Section, frozen=True):
    """Relay-box coils. The sounder pulses on_s/off_s for at most max_duration_s (neighbours sleep too;
    the guard has been woken by then); the strobe stays on until acknowledged: the fire standards ask
    for a visible indicator until the alarm is acknowledged (protocols.md §4)."""

    device: str = ""  # the relay box device id; "" = no sounder fitted
    sounder_outputs: tuple[str, ...] = ("sounder",)
    strobe_outputs: tuple[str, ...] = ("strobe",)
    on_s: Annotated[float, Meta(gt=0, le=60)] = 1.0
    off_s: Annotated[float, Meta(ge=0, le=60)] = 0.0  # 0 = continuous
    max_duration_s: Annotated[float, Meta(gt=0, le=3600)] = 300.0
    retry_s: Annotated[float, Meta(gt=0, le=300)] = 5.0  # relay box unreachable: write again this often


class Sms(_Section, frozen=True):
    # Per severity: "always", "uplink_down" (only when the uplink has been down > uplink_down_after_s:
    # the platform notifies people itself while it is reachable), or "never".
    critical: SmsPolicy = "always"
    major: SmsPolicy = "uplink_down"
    minor: SmsPolicy = "never"
    info: SmsPolicy = "never"
    uplink_down_after_s: Seconds = 60.0
    # Per recipient: at most one SMS every min_interval_s and max_per_hour in any hour.
    min_interval_s: Seconds = 30.0
    max_per_hour: Annotated[int, Meta(ge=1, le=1000)] = 20
    retry_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0  # modem unavailable: try again this often


class Templates(_Section, frozen=True):
    # Placeholders: {community} {courtyard} {place} (2栋1单元401) {room} (2栋1单元401室) {title} {date} (12月1日)
    # {time} (HH:MM local) {resident} (（独居老人）/（残疾人）/empty) {advice} (what to do, per device type)
    # {device} {severity} {tier}. Unknown placeholders are a config error (rules/check.py, actions/sms.py).
    raised: str = "【社区消防】{date}{time} {community}{courtyard}{room}{resident} {title}，{advice}"
    escalated: str = "【社区消防】{date}{time} {community}{courtyard}{room}{resident} {title}，{tier}级上报，尚无人确认，{advice}"


class Tier(_Section, frozen=True):
    """Contacts told `after_s` after the alarm was raised, unless it has been acknowledged by then."""

    after_s: Seconds
    roles: Annotated[tuple[ContactRole, ...], Meta(min_length=1)]
    # How the tier's contacts are told: "sms", "call" (phone call through the Cat-1 module, answered
    # with key 1 = acknowledged; issue 22), or both. Calls go one contact at a time, in role order.
    actions: Annotated[tuple[TierAction, ...], Meta(min_length=1)] = ("sms",)


DEFAULT_TIERS = (
    # The relative and the guard room and grid worker within seconds (issue 7), then up the chain.
    Tier(after_s=0, roles=(ContactRole.RELATIVE, ContactRole.GUARD_ROOM, ContactRole.GRID_WORKER)),
    Tier(after_s=300, roles=(ContactRole.SAFETY_MANAGER,)),
    Tier(after_s=600, roles=(ContactRole.STREET_CENTER,)),
)


class Trouble(_Section, frozen=True):
    """The local trouble (fault) indication, distinct from fire: a relay-box output on while any fault
    lasts (GB 4717 / EN 54-2 and GB 26875.1 §4.1: every fault signalled locally within 100 s). The
    deadlines below count from the fault's start; checks run every check_period_s, so the worst case is
    deadline + check_period_s (docs/RELIABILITY.md "Fault matrix")."""

    device: str = ""  # the relay box; "" = the sounder's (notify.sounder.device)
    outputs: tuple[str, ...] = ("trouble",)  # yellow fault lamp / buzzer coil(s); () = none fitted
    check_period_s: Annotated[float, Meta(gt=0, le=30)] = 5.0
    # The uplink reconnects within seconds after a broker restart: only a longer outage is a fault.
    uplink_after_s: Annotated[float, Meta(ge=0, le=90)] = 60.0
    centre_after_s: Annotated[float, Meta(ge=0, le=90)] = 60.0
    # A bus (serial port, modem) down: the driver reopens it with backoff; past this it is a fault.
    bus_after_s: Annotated[float, Meta(ge=0, le=90)] = 30.0


class Call(_Section, frozen=True):
    """Phone calls of tiers with `actions` including "call" (issue 22; docs/rules.md "Call flow").

    The callee hears `message` twice, then `prompt`, and acknowledges the alarm with key 1. Busy, no
    answer, declined, or answered without the key: the next contact of the tier is called."""

    # Per severity, as [notify.sms]: a welfare or SOS alarm should reach a relative even while the
    # platform is reachable (the platform calls nobody when the uplink is down).
    critical: SmsPolicy = "always"
    major: SmsPolicy = "always"
    minor: SmsPolicy = "never"
    info: SmsPolicy = "never"
    uplink_down_after_s: Seconds = 60.0
    min_interval_s: Seconds = 120.0  # per recipient
    max_per_hour: Annotated[int, Meta(ge=1, le=100)] = 6
    retry_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0  # modem unavailable: try again this often
    # A call holds the module: an SMS due meanwhile waits at most ring + message + key wait (docs/rules.md).
    ring_timeout_s: Annotated[float, Meta(gt=0, le=120)] = 30.0  # then hang up: no answer
    key_wait_s: Annotated[float, Meta(gt=0, le=120)] = 10.0  # after the message, for the key
    # Placeholders as the SMS templates. Spoken by the module's TTS: no brackets, digits read as numbers.
    message: str = "这里是{community}{courtyard}社区消防。{place}，{title}，时间{time}。"
    prompt: str = "确认请按1。"


class Notify(_Section, frozen=True):
    timezone: str = "Asia/Shanghai"  # for {time} in SMS text
    sounder: Sounder = Sounder()
    trouble: Trouble = Trouble()
    sms: Sms = Sms()
    call: Call = Call()
    templates: Templates = Templates()
    tiers: Annotated[tuple[Tier, ...], Meta(min_length=1)] = DEFAULT_TIERS
